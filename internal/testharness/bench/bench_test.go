package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name             string
		values           []float64
		median, min, max float64
	}{
		{"one run", []float64{7}, 7, 7, 7},
		{"odd count, unsorted", []float64{3, 1, 2}, 2, 1, 3},
		{"even count takes the mean of the middle two", []float64{4, 1, 3, 2}, 2.5, 1, 4},
		{"repeated values", []float64{5, 5, 1}, 5, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.values)
			f := Summarize("s", "n", "u", in)
			if f.Median != tt.median || f.Min != tt.min || f.Max != tt.max {
				t.Errorf("Summarize(%v) = median %v min %v max %v, want %v %v %v", tt.values, f.Median, f.Min, f.Max, tt.median, tt.min, tt.max)
			}
			if !slices.Equal(f.Runs, tt.values) || !slices.Equal(in, tt.values) {
				t.Errorf("runs %v (input now %v), want %v in run order, input untouched", f.Runs, in, tt.values)
			}
		})
	}
	if f := Summarize("s", "n", "u", nil); len(f.Runs) != 0 || f.Median != 0 {
		t.Errorf("no values: %+v", f)
	}
}

func TestQuantile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		var ds []time.Duration
		for _, v := range vs {
			ds = append(ds, time.Duration(v)*time.Millisecond)
		}
		return ds
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, reversed
	}
	tests := []struct {
		name string
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"single", ms(9), 0.99, 9 * time.Millisecond},
		{"median of 1..100", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"max", ms(hundred...), 1, 100 * time.Millisecond},
		{"q 0 is the minimum", ms(3, 1, 2), 0, time.Millisecond},
		{"p50 of four", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quantile(tt.ds, tt.q); got != tt.want {
				t.Errorf("Quantile(%v, %v) = %v, want %v", tt.ds, tt.q, got, tt.want)
			}
		})
	}
}

func TestParseStatusField(t *testing.T) {
	status := "Name:\tgateway\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"
	for field, want := range map[string]float64{"VmHWM": 50, "VmRSS": 40} {
		got, err := parseStatusField(bufio.NewScanner(strings.NewReader(status)), field)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v MiB", field, got, err, want)
		}
	}
	if _, err := parseStatusField(bufio.NewScanner(strings.NewReader(status)), "VmSwap"); err == nil {
		t.Error("a missing field gave no error")
	}
	if _, err := parseStatusField(bufio.NewScanner(strings.NewReader("VmRSS:\tlots kB\n")), "VmRSS"); err == nil {
		t.Error("a malformed value gave no error")
	}
}

func TestProcMemoryOfThisProcess(t *testing.T) {
	rss, err := procMemory(os.Getpid(), "VmRSS")
	if err != nil || rss <= 0 {
		t.Fatalf("own RSS = %v MiB, %v", rss, err)
	}
}

func TestReportTableAndJSON(t *testing.T) {
	rep := &Report{
		Started: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC), CPUs: 2, GoVersion: "go1.26", Config: QuickConfig(),
		Scenarios: []ScenarioInfo{{Name: "burst", Describe: "a burst"}},
		Figures: []Figure{
			Summarize("burst", "throughput", "tasks/s", []float64{812.4, 790.2, 830.9}),
			Summarize("burst", "submit→notified p50", "ms", []float64{12.345, 11.5, 13}),
			Summarize("depth", "never measured", "ms", nil),
		},
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	table := b.String()
	for _, want := range []string{"2 CPUs", "3 run(s)", "a burst", "throughput", "812", "790", "831", "tasks/s", "12.3", "11.5", "13.0", "n/a"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	path := filepath.Join(t.TempDir(), "sub", "results.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Figures) != 3 || back.Figures[0].Median != 812.4 || back.Figures[0].Min != 790.2 || len(back.Figures[0].Runs) != 3 {
		t.Errorf("JSON figures = %+v", back.Figures)
	}
}

func TestScenarioSelection(t *testing.T) {
	c := QuickConfig()
	c.Scenarios = []string{"burst", "no-such"}
	if _, err := Run(t.Context(), c, t.Logf); err == nil || !strings.Contains(err.Error(), "no-such") {
		t.Errorf("unknown scenario: err = %v", err)
	}
	for _, name := range QuickConfig().Scenarios {
		if !slices.Contains(ScenarioNames(), name) {
			t.Errorf("quick scenario %q is not a scenario", name)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (daprd (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 30 0 100 0 0"
	if got, err := parseStatCPU(stat); err != nil || got != 3.8 {
		t.Errorf("parseStatCPU = %v, %v; want 3.8 s (250 + 130 ticks)", got, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) gave no error", bad)
		}
	}
	if v, err := procCPU(os.Getpid()); err != nil || v < 0 {
		t.Errorf("own CPU time = %v, %v", v, err)
	}
}

// The chaos run kills the kinds named, every kind when none is, and refuses a kind it
// does not know.
func TestChaosKill(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		names   []string
		want    []string
		wantErr bool
	}{
		{"none named: every kind", nil, ChaosKinds, false},
		{"some named", []string{"placement", "worker app"}, []string{"placement", "worker app"}, false},
		{"an unknown kind", []string{"placement", "etcd"}, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chaosKill(tt.names)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("chaosKill(%q) = %q, %v; want %q (error: %v)", tt.names, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSubmittedFrom(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) timing { return timing{submitted: t0.Add(d)} }
	ts := []timing{at(0), at(1999 * time.Millisecond), at(2 * time.Second), at(5 * time.Second), at(time.Second)}
	got := submittedFrom(ts, t0.Add(steadyAfter))
	if len(got) != 2 || !got[0].submitted.Equal(t0.Add(2*time.Second)) || !got[1].submitted.Equal(t0.Add(5*time.Second)) {
		t.Errorf("submittedFrom = %v, want the tasks submitted at 2 s and 5 s", got)
	}
	if got := submittedFrom(ts, t0.Add(time.Minute)); len(got) != 0 {
		t.Errorf("from after the last: %v, want none", got)
	}
}
