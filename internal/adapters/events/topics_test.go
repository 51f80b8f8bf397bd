package events

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The local broker creates the topics listed in deploy/local.env; they must be exactly
// the lifecycle topics.
func TestLocalEnvListsTopics(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "local.env"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TASKGRID_KAFKA_TOPICS=(.*)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("deploy/local.env has no TASKGRID_KAFKA_TOPICS")
	}
	got := strings.Split(string(m[1]), ",")
	want := Topics()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("deploy/local.env topics = %v, want %v", got, want)
	}
}
