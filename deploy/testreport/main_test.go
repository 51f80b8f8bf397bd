package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"ok line\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"boom\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestB"}`,
		`{"Action":"skip","Package":"p","Test":"TestC"}`,
		`{"Action":"fail","Package":"p","Elapsed":1.5}`,
		`# build error line`,
	}, "\n")
	var out bytes.Buffer
	c, err := report(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if c != (counts{passed: 1, failed: 1, skipped: 1}) {
		t.Fatalf("counts = %+v", c)
	}
	got := out.String()
	for _, want := range []string{"--- FAIL p TestB\nboom\n", "fail p (1.5s)", "# build error line", "tests: 1 passed, 1 failed, 1 skipped\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "ok line") {
		t.Errorf("output of a passing test was printed:\n%s", got)
	}
}

// A package that fails outside its tests (its TestMain could not start the stack, or it
// does not build) counts as a failure: a run must not pass on tests that never ran.
func TestPackageFailureWithoutFailedTest(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		`{"Action":"pass","Package":"ok","Test":"TestA"}`,
		`{"Action":"pass","Package":"ok","Elapsed":0.1}`,
		`{"Action":"output","Package":"e2e","Output":"stacktest: the stack did not start\n"}`,
		`{"Action":"fail","Package":"e2e","Elapsed":10.9}`,
	}, "\n")
	var out bytes.Buffer
	c, err := report(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if c != (counts{passed: 1, failed: 1}) {
		t.Fatalf("counts = %+v, want the package counted as failed", c)
	}
	if got := out.String(); !strings.Contains(got, "the stack did not start") || !strings.Contains(got, "--- FAIL e2e (the package failed outside its tests)") {
		t.Errorf("output:\n%s", got)
	}
}
