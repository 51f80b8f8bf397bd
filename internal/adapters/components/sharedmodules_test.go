package components

// The apps and the Dapr runtime are compiled on the same machine, with the same flags
// (GOFLAGS=-trimpath -gcflags=all=-dwarf=false in the Makefile and install-dapr.sh), so a
// package both import compiles once: the runtime's build finds it in the build cache.
// That holds only when the package and everything below it are the same version in both
// builds. These tests hold the modules that supply the apps' binaries at the versions the
// runtime's go.mod gives: gRPC, protobuf, golang.org/x/..., OpenTelemetry, the Prometheus
// client and their like, 180 packages and about 40 s of CPU of a fresh machine's first
// `make run`. A `go get` that moves one of them fails here, with the version to go back to.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goModVersions reads the versions a go.mod selects for the modules it requires, with its
// replace directives applied (a replaced module maps to "new-path version").
func goModVersions(r io.Reader) (map[string]string, error) {
	type replacement struct{ version, to string } // version "": every version
	required := map[string]string{}
	replaced := map[string]replacement{}
	block := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "":
			continue
		case line == ")":
			block = ""
			continue
		case strings.HasSuffix(line, "("):
			block = strings.TrimSpace(strings.TrimSuffix(line, "("))
			continue
		}
		verb, rest := block, line
		if verb == "" {
			verb, rest, _ = strings.Cut(line, " ")
		}
		f := strings.Fields(rest)
		switch verb {
		case "require":
			if len(f) != 2 {
				return nil, fmt.Errorf("line %d: require wants a module and a version: %q", n, line)
			}
			required[f[0]] = f[1]
		case "replace":
			// old [v] => new [v]: a replacement of one version only, or of every version.
			arrow := slices.Index(f, "=>")
			if arrow < 1 || arrow > 2 || len(f)-arrow-1 < 1 || len(f)-arrow-1 > 2 {
				return nil, fmt.Errorf("line %d: replace wants old [version] => new [version]: %q", n, line)
			}
			r := replacement{to: strings.Join(f[arrow+1:], " ")}
			if arrow == 2 {
				r.version = f[1]
			}
			replaced[f[0]] = r
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// Replace directives may come before the requires; one of a single version applies only
	// when that is the version required.
	for mod, r := range replaced {
		if v, ok := required[mod]; ok && (r.version == "" || r.version == v) {
			required[mod] = r.to
		}
	}
	return required, nil
}

// ownVersion names the modules the apps keep at a version of their own, and why: the local
// Kafka broker (kfake, deploy/kafka) needs newer compression libraries than Dapr's Kafka
// client, and going back would remove kfake; they are a few seconds of compile. A module
// moved ahead of the runtime on purpose (a security fix the apps need before Dapr ships it)
// goes here too, with its reason: it costs only its packages' compile on a fresh machine.
var ownVersion = map[string]string{
	"github.com/klauspost/compress": "kfake needs v1.20 or later",
	"github.com/pierrec/lz4/v4":     "kfake needs v4.1.33 or later",
}

// moduleDrift lists, sorted, each module whose version in ours differs from the runtime's,
// among the modules both have, except the ones in keep.
func moduleDrift(ours, runtime map[string]string, keep map[string]string) []string {
	var drift []string
	for mod, v := range ours {
		if _, ok := keep[mod]; ok {
			continue
		}
		if rv, ok := runtime[mod]; ok && rv != v {
			drift = append(drift, fmt.Sprintf("%s: %s here, %s in the runtime (go get %s@%s)", mod, v, rv, mod, rv))
		}
	}
	slices.Sort(drift)
	return drift
}

func TestGoModVersions(t *testing.T) {
	tests := []struct {
		name, gomod string
		want        map[string]string
		wantErr     string
	}{
		{
			name: "blocks, single lines, comments",
			gomod: "module example.com/m\n\ngo 1.26\n\nrequire example.com/a v1.0.0\n\n" +
				"require (\n\texample.com/b v1.2.0 // indirect\n\t// a comment\n\texample.com/c v0.1.0\n)\n",
			want: map[string]string{"example.com/a": "v1.0.0", "example.com/b": "v1.2.0", "example.com/c": "v0.1.0"},
		},
		{
			name: "replacements before the requires: of the required version, and of another",
			gomod: "replace example.com/a v1.0.0 => example.com/a v1.0.1\nreplace example.com/b v0.9.0 => example.com/b v0.9.1\n\n" +
				"require (\n\texample.com/a v1.0.0\n\texample.com/b v1.0.0\n)\n",
			want: map[string]string{"example.com/a": "example.com/a v1.0.1", "example.com/b": "v1.0.0"},
		},
		{
			name: "replacements, of every version and of the selected one; one of another version is not applied",
			gomod: "require (\n\texample.com/a v1.0.0\n\texample.com/b v1.2.0\n\texample.com/c v0.1.0\n)\n" +
				"replace example.com/a => example.com/fork v1.0.1\n" +
				"replace (\n\texample.com/b v1.2.0 => example.com/b v1.2.1\n\texample.com/c v0.0.9 => example.com/c v0.0.8\n)\n",
			want: map[string]string{"example.com/a": "example.com/fork v1.0.1", "example.com/b": "example.com/b v1.2.1", "example.com/c": "v0.1.0"},
		},
		{name: "a require without its version", gomod: "require example.com/a\n", wantErr: "line 1: require wants"},
		{name: "a replace without its arrow", gomod: "replace example.com/a example.com/b v1\n", wantErr: "line 1: replace wants"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := goModVersions(strings.NewReader(tc.gomod))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestModuleDrift(t *testing.T) {
	ours := map[string]string{"a": "v1.0.0", "b": "v1.1.0", "kept": "v1.5.0", "only-ours": "v3.0.0"}
	runtime := map[string]string{"a": "v1.0.0", "b": "v1.0.9", "kept": "v1.4.0", "only-runtime": "v2.0.0"}
	got := moduleDrift(ours, runtime, map[string]string{"kept": "a reason"})
	want := []string{"b: v1.1.0 here, v1.0.9 in the runtime (go get b@v1.0.9)"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// runGo runs the go command in the repository's root and returns its standard output.
func runGo(t *testing.T, args ...string) []byte {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to read the module graph: %v", err)
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// The binaries `make build` compiles (the Makefile's $(BIN_DIR)/.built).
var builtPackages = []string{"./apps/gateway", "./apps/worker", "./apps/storekeeper", "./analytics", "./deploy/kafka", "./deploy/run"}

func TestAppsShareTheRuntimesModuleVersions(t *testing.T) {
	version := runtimeVersion(t)

	// The modules that supply the apps' binaries, at the versions this module selects.
	out := runGo(t, append([]string{"list", "-deps", "-f", "{{with .Module}}{{.Path}} {{.Version}}{{end}}"}, builtPackages...)...)
	ours := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if mod, v, ok := strings.Cut(line, " "); ok && v != "" { // the main module has no version
			ours[mod] = v
		}
	}
	if ours["github.com/dapr/dapr"] != "v"+version {
		t.Errorf("the apps use github.com/dapr/dapr %q (its gRPC API), the sidecars run v%s (deploy/versions.env): go get github.com/dapr/dapr@v%s",
			ours["github.com/dapr/dapr"], version, version)
	}

	var info struct{ GoMod, Error string }
	if err := json.Unmarshal(runGo(t, "mod", "download", "-json", "github.com/dapr/dapr@v"+version), &info); err != nil || info.GoMod == "" {
		t.Fatalf("the runtime's go.mod: %v %s", err, info.Error)
	}
	f, err := os.Open(info.GoMod)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runtime, err := goModVersions(f)
	if err != nil {
		t.Fatalf("%s: %v", info.GoMod, err)
	}
	shared := 0
	for mod := range ours {
		if _, ok := runtime[mod]; ok {
			shared++
		}
	}
	// gRPC, protobuf, golang.org/x/{net,sys,text}, OpenTelemetry, the Prometheus client...:
	// far fewer would mean the lists were not read right.
	if shared < 15 {
		t.Fatalf("only %d modules of the apps are in the runtime's go.mod (%s): the module lists were not read right", shared, info.GoMod)
	}
	if drift := moduleDrift(ours, runtime, ownVersion); len(drift) > 0 {
		t.Errorf("%d of the %d modules the apps share with Dapr v%s are at other versions, so the runtime's build compiles their packages again:\n  %s",
			len(drift), shared, version, strings.Join(drift, "\n  "))
	}
}

// runtimeVersion is DAPR_RUNTIME_VERSION from deploy/versions.env.
func runtimeVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "versions.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "DAPR_RUNTIME_VERSION="); ok && v != "" {
			return v
		}
	}
	t.Fatal("deploy/versions.env has no DAPR_RUNTIME_VERSION")
	return ""
}
