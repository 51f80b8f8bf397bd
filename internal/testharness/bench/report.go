package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// Report is the outcome of one benchmark: every figure, and what produced it.
type Report struct {
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	CPUs      int       `json:"cpus"`
	GoVersion string    `json:"go_version"`
	Config    Config    `json:"config"`
	// FileSystem holds the stack's directory (nil: not found out).
	FileSystem *FileSystem    `json:"file_system,omitempty"`
	Scenarios  []ScenarioInfo `json:"scenarios"`
	Figures    []Figure       `json:"figures"`
}

// ScenarioInfo says what a scenario did, and with which settings (the River peer's).
type ScenarioInfo struct {
	Name     string    `json:"name"`
	Describe string    `json:"describe"`
	Settings []Setting `json:"settings,omitempty"`
}

// Setting is one setting a scenario ran with.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// WriteTable prints the report: the scenarios (with their settings), the main table
// of figures (median, min, max), then the breakdowns, every figure of the JSON once:
// CPU per task by process group, sidecar calls per task by kind and latency by leg, a column per
// scenario, taskgrid's burst against River's beside River's settings, and the targets.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "taskgrid benchmark, %s, %d CPUs, %s, %d run(s) per scenario\n\n",
		r.Started.Format(time.RFC3339), r.CPUs, r.GoVersion, r.Config.Runs)
	if r.FileSystem != nil && r.FileSystem.Note() != "" {
		fmt.Fprintf(w, "%s\n\n", r.FileSystem.Note())
	}
	for _, s := range r.Scenarios {
		fmt.Fprintf(w, "  %-17s %s\n", s.Name, s.Describe)
		if s.Name != "vs-river" {
			for _, set := range s.Settings {
				fmt.Fprintf(w, "  %-17s   %s: %s\n", "", set.Name, set.Value)
			}
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tfigure\tmedian\tmin\tmax\tunit\t")
	for _, f := range r.Figures {
		if f.Breakdown != "" || f.Scenario == "vs-river" {
			continue
		}
		if len(f.Runs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\tn/a\tn/a\tn/a\t%s\t\n", f.Scenario, f.Name, f.Unit)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", f.Scenario, f.Name, num(f.Median), num(f.Min), num(f.Max), f.Unit)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := r.writeBreakdown(w, BreakdownCPU, "CPU per task by process, ms (median, min–max of the runs)", cpuPrefix, cpuTotalName, "total"); err != nil {
		return err
	}
	if err := r.writeBreakdown(w, BreakdownSwitches, "Context switches per task by process, voluntary and not, every thread (median, min–max of the runs)", switchesPrefix, switchesTotalName, "total"); err != nil {
		return err
	}
	if err := r.writeBreakdown(w, BreakdownCalls, "Sidecar calls per task by kind, from daprd's metrics (median, min–max of the runs; a kind's total counts the calls apps make on their sidecars)", callsPrefix, appCallsName, "all app → sidecar calls"); err != nil {
		return err
	}
	if err := r.writeBreakdown(w, BreakdownHops, "Latency by leg, ms: the mean of each kind of call on a task's way, from daprd's histograms (median, min–max of the runs; a leg includes the legs it waits for)", hopsPrefix, "", ""); err != nil {
		return err
	}
	if err := r.writeComparison(w); err != nil {
		return err
	}
	return r.writeTargets(w)
}

// writeBreakdown prints the figures of one breakdown as rows (their names less prefix,
// a calls kind's rows indented below its total) by scenario, and last the main-table
// figure named total as the row totalRow.
func (r *Report) writeBreakdown(w io.Writer, breakdown, title, prefix, total, totalRow string) error {
	var rows, cols []string
	cell := map[[2]string]Figure{}
	for _, f := range r.Figures {
		if f.Breakdown != breakdown && f.Name != total {
			continue
		}
		row := strings.TrimPrefix(f.Name, prefix)
		if f.Name == total {
			row = totalRow
		}
		if !slices.Contains(rows, row) {
			rows = append(rows, row)
		}
		if !slices.Contains(cols, f.Scenario) {
			cols = append(cols, f.Scenario)
		}
		cell[[2]string{row, f.Scenario}] = f
	}
	if len(rows) == 0 {
		return nil
	}
	// The total is printed last, below the rows it adds up.
	if i := slices.Index(rows, totalRow); i >= 0 {
		rows = append(slices.Delete(rows, i, i+1), totalRow)
	}
	grid := [][]string{append([]string{""}, cols...)}
	for _, row := range rows {
		label := row
		if _, what, ok := strings.Cut(row, ": "); ok {
			label = "  " + what
		}
		line := []string{label}
		for _, c := range cols {
			f, ok := cell[[2]string{row, c}]
			switch {
			case !ok:
				line = append(line, "")
			case len(f.Runs) == 0:
				line = append(line, "n/a")
			case len(f.Runs) == 1 || f.Min == f.Max:
				line = append(line, num(f.Median))
			default:
				line = append(line, fmt.Sprintf("%s (%s–%s)", num(f.Median), num(f.Min), num(f.Max)))
			}
		}
		grid = append(grid, line)
	}
	fmt.Fprintf(w, "\n%s\n\n", title)
	return writeGrid(w, grid)
}

// writeGrid prints rows as columns two spaces apart: the first left-aligned, the others
// right-aligned.
func writeGrid(w io.Writer, rows [][]string) error {
	var width []int
	for _, row := range rows {
		for i, c := range row {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i == 0 {
				b.WriteString("  " + c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeComparison prints taskgrid's burst as ratios of River's, with River's settings.
func (r *Report) writeComparison(w io.Writer) error {
	i := slices.IndexFunc(r.Scenarios, func(s ScenarioInfo) bool { return s.Name == "vs-river" })
	if i < 0 {
		return nil
	}
	fmt.Fprintf(w, "\ntaskgrid against River, the same burst: %s\n", r.Scenarios[i].Describe)
	fmt.Fprintln(w, "River's settings:")
	for _, set := range r.Scenarios[i].Settings {
		fmt.Fprintf(w, "  %s: %s\n", set.Name, set.Value)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\ttaskgrid\tRiver\tratio\tmin\tmax\t")
	for _, f := range r.Figures {
		if f.Scenario != "vs-river" {
			continue
		}
		ours, theirs := r.comparedFigures(f.Name)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s×\t%s×\t%s×\t\n", f.Name, ours, theirs, num(f.Median), num(f.Min), num(f.Max))
	}
	return tw.Flush()
}

// comparedFigures are the two medians, with units, behind a vs-river figure.
func (r *Report) comparedFigures(name string) (string, string) {
	for _, p := range riverPairs {
		if p.name != name {
			continue
		}
		var out [2]string
		for i, want := range [][2]string{{"burst", p.ours}, {"peer-river", p.theirs}} {
			for _, f := range r.Figures {
				if f.Scenario == want[0] && f.Name == want[1] {
					out[i] = num(f.Median) + " " + f.Unit
				}
			}
		}
		return out[0], out[1]
	}
	return "", ""
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
