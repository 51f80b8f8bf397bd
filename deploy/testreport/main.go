// Command testreport reads `go test -json` on stdin, prints each package result and the
// output of every failed test as it arrives, and ends with one summary line:
// "tests: N passed, N failed, N skipped". It exits 1 when anything failed or when no
// test ran at all.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type counts struct{ passed, failed, skipped int }

func main() {
	c, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	if c.failed > 0 || c.passed == 0 {
		os.Exit(1)
	}
}

func report(r io.Reader, w io.Writer) (counts, error) {
	var c counts
	outputs := map[string][]string{} // package/test → its output lines, until it ends
	testFailed := map[string]bool{}  // package → one of its tests failed
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, string(line)) // build errors and other plain output
			continue
		}
		key := e.Package + "/" + e.Test
		switch e.Action {
		case "output":
			outputs[key] = append(outputs[key], e.Output)
		case "pass", "fail", "skip":
			out := outputs[key]
			delete(outputs, key)
			if e.Test == "" { // a package finished
				action := e.Action
				switch action {
				case "fail":
					fmt.Fprint(w, strings.Join(out, ""))
					if !testFailed[e.Package] {
						// The package failed with no test failing (a build error, or a
						// TestMain that could not start its stack): that is a failure too.
						c.failed++
						fmt.Fprintf(w, "--- FAIL %s (the package failed outside its tests)\n", e.Package)
					}
				case "skip":
					action = "none" // go test reports a package without tests as skipped
				}
				fmt.Fprintf(w, "%-4s %s (%.1fs)\n", action, e.Package, e.Elapsed)
				continue
			}
			switch e.Action {
			case "pass":
				c.passed++
			case "skip":
				c.skipped++
			case "fail":
				c.failed++
				testFailed[e.Package] = true
				fmt.Fprintf(w, "--- FAIL %s %s\n%s", e.Package, e.Test, strings.Join(out, ""))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("read go test output: %w", err)
	}
	fmt.Fprintf(w, "tests: %d passed, %d failed, %d skipped\n", c.passed, c.failed, c.skipped)
	return c, nil
}
