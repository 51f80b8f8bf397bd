package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one benchmark: every figure, and what produced it.
type Report struct {
	Started   time.Time      `json:"started"`
	Finished  time.Time      `json:"finished"`
	CPUs      int            `json:"cpus"`
	GoVersion string         `json:"go_version"`
	Config    Config         `json:"config"`
	Scenarios []ScenarioInfo `json:"scenarios"`
	Figures   []Figure       `json:"figures"`
}

// ScenarioInfo says what a scenario did.
type ScenarioInfo struct {
	Name     string `json:"name"`
	Describe string `json:"describe"`
}

// WriteTable prints the report as an aligned table, one figure a line.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "taskgrid benchmark, %s, %d CPUs, %s, %d run(s) per scenario\n\n",
		r.Started.Format(time.RFC3339), r.CPUs, r.GoVersion, r.Config.Runs)
	for _, s := range r.Scenarios {
		fmt.Fprintf(w, "  %-17s %s\n", s.Name, s.Describe)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tfigure\tmedian\tmin\tmax\tunit\t")
	for _, f := range r.Figures {
		if len(f.Runs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\tn/a\tn/a\tn/a\t%s\t\n", f.Scenario, f.Name, f.Unit)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", f.Scenario, f.Name, num(f.Median), num(f.Min), num(f.Max), f.Unit)
	}
	return tw.Flush()
}

// num formats a figure with three significant digits at least, never in exponent form.
func num(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// WriteJSON writes the report to path (its directory is created), replacing it whole.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
