// Package layers checks the architecture's import rules on the source tree: the domain
// (internal/domain) knows nothing of Dapr or of the other layers, and only the adapters
// (internal/adapters) import the Dapr SDK.
package layers

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/taskgrid/taskgrid/"

// imports returns the imports of every non-test Go file below the repository root, by
// file (slash-separated, relative to the root).
func imports(t *testing.T) map[string][]string {
	t.Helper()
	root := filepath.Join("..", "..", "..")
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || rel == "deploy/bench/river" || rel == "deploy/daprd" || d.Name() == "node_modules" {
				// hidden; the peer benchmark's own module; and the name resolver compiled
				// into daprd, a part of the runtime, not of the apps (its own module)
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out[rel] = append(out[rel], p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("found only %d Go files: not the repository root?", len(out))
	}
	return out
}

func TestOnlyAdaptersImportTheDaprSDK(t *testing.T) {
	t.Parallel()
	for file, imps := range imports(t) {
		for _, p := range imps {
			if strings.HasPrefix(p, "github.com/dapr/") && !strings.HasPrefix(file, "internal/adapters/") && file != "internal/tools/tools.go" {
				t.Errorf("%s imports %s: only internal/adapters may", file, p)
			}
		}
	}
}

func TestDomainDependsOnNothingOutside(t *testing.T) {
	t.Parallel()
	seen := 0
	for file, imps := range imports(t) {
		if !strings.HasPrefix(file, "internal/domain/") {
			continue
		}
		seen++
		for _, p := range imps {
			inside := strings.HasPrefix(p, module+"internal/domain/")
			std := !strings.Contains(strings.SplitN(p, "/", 2)[0], ".")
			if !inside && !std && p != "github.com/google/uuid" {
				t.Errorf("%s imports %s: the domain uses only the standard library, uuid and other domain packages", file, p)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no file under internal/domain")
	}
}
