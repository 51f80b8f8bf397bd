package components

// The local daprd is built with only the components in deploy/dapr-components.txt
// (deploy/scripts/install-dapr.sh). These tests hold that list against what
// components/*.yaml and components/config.yaml use (make run, and the test stacks of
// internal/testharness/stacktest, load exactly those files), so a component added to
// components/ without being compiled in fails here, not at run time: daprd exits on
// an unknown component type, but for a component with ignoreErrors (pubsub, fanout)
// or a name resolver it only logs an error and runs on without it.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var repoRoot = filepath.Join("..", "..", "..")

// daprResource is what a Dapr resource file says about the components it needs.
type daprResource struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Type           string `yaml:"type"`
		NameResolution *struct {
			Component string `yaml:"component"`
		} `yaml:"nameResolution"`
		HTTPPipeline    *daprPipeline `yaml:"httpPipeline"`
		AppHTTPPipeline *daprPipeline `yaml:"appHttpPipeline"`
	} `yaml:"spec"`
}

type daprPipeline struct {
	Handlers []struct {
		Type string `yaml:"type"`
	} `yaml:"handlers"`
}

// componentTypesUsed reads Dapr resource files (several documents a file allowed) and
// returns every component type they need, each with the files that need it.
// Self-hosted daprd falls back to the mDNS resolver when no Configuration names one.
func componentTypesUsed(files map[string][]byte) (map[string][]string, error) {
	used := map[string][]string{}
	add := func(typ, file string) {
		if !slices.Contains(used[typ], file) {
			used[typ] = append(used[typ], file)
		}
	}
	sawConfig := false
	for file, data := range files {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var r daprResource
			err := dec.Decode(&r)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			switch r.Kind {
			case "Component":
				if r.Spec.Type == "" {
					return nil, fmt.Errorf("%s: a Component without spec.type", file)
				}
				add(r.Spec.Type, file)
			case "Configuration":
				sawConfig = true
				resolver := "mdns"
				if r.Spec.NameResolution != nil && r.Spec.NameResolution.Component != "" {
					resolver = r.Spec.NameResolution.Component
				}
				add("nameresolution."+resolver, file)
				for _, p := range []*daprPipeline{r.Spec.HTTPPipeline, r.Spec.AppHTTPPipeline} {
					if p == nil {
						continue
					}
					for _, h := range p.Handlers {
						add(h.Type, file)
					}
				}
			}
		}
	}
	if !sawConfig {
		add("nameresolution.mdns", "(no Configuration)")
	}
	return used, nil
}

// parseComponentList reads deploy/dapr-components.txt the way install-dapr.sh does:
// '#' starts a comment, blanks are ignored, one type a line.
func parseComponentList(data []byte) ([]string, error) {
	var out []string
	valid := regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)+$`)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.Join(strings.Fields(line), "")
		if line == "" {
			continue
		}
		if !valid.MatchString(line) {
			return nil, fmt.Errorf("line %d: %q is not a component type such as state.redis", n, line)
		}
		if slices.Contains(out, line) {
			return nil, fmt.Errorf("line %d: %s listed twice", n, line)
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// compareBuild lists what differs between the types the resources use and the list built in.
func compareBuild(used map[string][]string, listed []string) []string {
	var problems []string
	for typ, files := range used {
		if !slices.Contains(listed, typ) {
			slices.Sort(files)
			problems = append(problems, fmt.Sprintf("%s (used by %s) is not compiled into daprd: add it to deploy/dapr-components.txt", typ, strings.Join(files, ", ")))
		}
	}
	for _, typ := range listed {
		if _, ok := used[typ]; !ok {
			problems = append(problems, fmt.Sprintf("%s is compiled into daprd but nothing in components/ uses it: remove it from deploy/dapr-components.txt", typ))
		}
	}
	slices.Sort(problems)
	return problems
}

func TestDaprBuildHasExactlyTheComponentsUsed(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob(filepath.Join(repoRoot, "components", "*.y*ml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no components/*.yaml: %v", err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Join("components", filepath.Base(p))] = data
	}
	used, err := componentTypesUsed(files)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "dapr-components.txt"))
	if err != nil {
		t.Fatal(err)
	}
	listed, err := parseComponentList(data)
	if err != nil {
		t.Fatalf("deploy/dapr-components.txt: %v", err)
	}
	for _, p := range compareBuild(used, listed) {
		t.Error(p)
	}
	// The runtime the tests and make run use is the one the script builds from that list.
	script, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "scripts", "install-dapr.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for line := range strings.Lines(string(script)) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			code = append(code, line)
		}
	}
	if c := strings.Join(code, ""); !strings.Contains(c, "dapr-components.txt") || strings.Contains(c, "allcomponents") {
		t.Error("deploy/scripts/install-dapr.sh no longer builds daprd from deploy/dapr-components.txt alone")
	}
}

// The comparison itself catches both directions, the default resolver and middleware.
func TestCompareBuildReportsDifferences(t *testing.T) {
	t.Parallel()
	files := map[string][]byte{
		"a.yaml":      []byte("kind: Component\nspec: {type: state.redis}\n---\nkind: Component\nspec: {type: pubsub.kafka}\n"),
		"config.yaml": []byte("kind: Configuration\nspec:\n  httpPipeline:\n    handlers: [{name: up, type: middleware.http.uppercase}]\n"),
	}
	used, err := componentTypesUsed(files)
	if err != nil {
		t.Fatal(err)
	}
	got := compareBuild(used, []string{"state.redis", "bindings.mysql"})
	want := []string{
		"bindings.mysql is compiled into daprd but nothing in components/ uses it: remove it from deploy/dapr-components.txt",
		"middleware.http.uppercase (used by config.yaml) is not compiled into daprd: add it to deploy/dapr-components.txt",
		"nameresolution.mdns (used by config.yaml) is not compiled into daprd: add it to deploy/dapr-components.txt",
		"pubsub.kafka (used by a.yaml) is not compiled into daprd: add it to deploy/dapr-components.txt",
	}
	if !slices.Equal(got, want) {
		t.Errorf("compareBuild =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := parseComponentList([]byte("state.redis\nstate.redis\n")); err == nil {
		t.Error("a type listed twice was accepted")
	}
	if _, err := parseComponentList([]byte("redis\n")); err == nil {
		t.Error("a type without a kind was accepted")
	}
}
