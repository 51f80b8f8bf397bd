package stacktest

import (
	"slices"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	base := []string{"PATH=/bin", "GOGC=400", "TASKGRID_REDIS_HOST=shell", "DAPR_API_TOKEN=shell", "APP_PORT=1", "HOME=/root"}
	got := mergeEnv(base, map[string]string{"DAPR_API_TOKEN": "stack", "PATH": "/usr/bin"})
	slices.Sort(got)
	want := []string{"DAPR_API_TOKEN=stack", "HOME=/root", "PATH=/usr/bin"}
	if !slices.Equal(got, want) {
		t.Fatalf("mergeEnv = %v, want %v (the shell's GOGC, TASKGRID_*, DAPR_*, APP_* dropped; vars set)", got, want)
	}
}

func TestWithEnv(t *testing.T) {
	base := []string{"DAPR_HOST_IP=127.0.0.1", "TASKGRID_KAFKA_BROKERS=b:1", "A=1"}
	got := withEnv(base, map[string]string{"DAPR_HOST_IP": "198.18.0.10"})
	slices.Sort(got)
	want := []string{"A=1", "DAPR_HOST_IP=198.18.0.10", "TASKGRID_KAFKA_BROKERS=b:1"}
	if !slices.Equal(got, want) {
		t.Fatalf("withEnv = %v, want %v", got, want)
	}
}
