package procs

import "testing"

func TestFor(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		app     string
		sidecar bool
		want    string
	}{
		{"gateway", false, ""},
		{"gateway", true, ""},
		{"worker", false, ""},
		{"worker", true, "1"},
		{"storekeeper", false, "1"},
		{"storekeeper", true, "1"},
		{"analytics", false, "1"},
		{"analytics", true, "1"},
		{"", false, "1"}, // placement, scheduler, sentry, the broker
	} {
		if got := For(tt.app, tt.sidecar); got != tt.want {
			t.Errorf("For(%q, sidecar %v) = %q, want %q", tt.app, tt.sidecar, got, tt.want)
		}
	}
}

func TestChosen(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env  []string
		want bool
	}{
		{nil, false},
		{[]string{"PATH=/bin", "GOGC=400"}, false},
		{[]string{"GOMAXPROCSX=2"}, false},
		{[]string{"PATH=/bin", "GOMAXPROCS=4"}, true},
		{[]string{"GOMAXPROCS="}, true},
	} {
		if got := Chosen(tt.env); got != tt.want {
			t.Errorf("Chosen(%q) = %v, want %v", tt.env, got, tt.want)
		}
	}
}

func TestSetting(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env       []string
		app       string
		sidecar   bool
		want      string
		wantValue bool
	}{
		{[]string{"PATH=/bin"}, "storekeeper", true, "1", true},
		{[]string{"PATH=/bin"}, "gateway", false, "", true},
		{[]string{"PATH=/bin", "GOMAXPROCS=4"}, "storekeeper", true, "", false},
	} {
		if got, ok := Setting(tt.env, tt.app, tt.sidecar); got != tt.want || ok != tt.wantValue {
			t.Errorf("Setting(%q, %q, %v) = %q, %v; want %q, %v", tt.env, tt.app, tt.sidecar, got, ok, tt.want, tt.wantValue)
		}
	}
}
