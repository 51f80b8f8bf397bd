package kubernetes

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// What the local run uses (components/, dapr.yaml, deploy/local.env) and what the code
// says, read by the tests so that the chart is held against them.

const modulePath = "github.com/taskgrid/taskgrid"

// localComponents reads components/*.yaml: the components by name, the Configuration
// and the Resiliency. Components decode strictly into the same type as the chart's.
type localFiles struct {
	components    map[string]*Component
	configuration *Configuration
	resiliency    *localResiliency
}

// localResiliency is components/resiliency.yaml. Its retries carry initialInterval,
// which is not a field of Dapr 1.18's Resiliency (daprd drops it when it decodes the
// file); it is the only field allowed beyond Retry.
type localResiliency struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec ResiliencySpec[localRetry] `json:"spec"`
}

type localRetry struct {
	Retry
	InitialInterval string `json:"initialInterval,omitempty"`
}

func loadLocal(t *testing.T) localFiles {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "components", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no components/*.yaml: %v", err)
	}
	lf := localFiles{components: map[string]*Component{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ Kind string }
		if err := yaml.Unmarshal(data, &head); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		switch head.Kind {
		case "Component":
			c := new(Component)
			if err := strictUnmarshal(data, c); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			lf.components[c.Metadata.Name] = c
		case "Configuration":
			lf.configuration = new(Configuration)
			if err := strictUnmarshal(data, lf.configuration); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		case "Resiliency":
			lf.resiliency = new(localResiliency)
			if err := strictUnmarshal(data, lf.resiliency); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		default:
			t.Fatalf("%s: kind %q: the test does not know it", f, head.Kind)
		}
	}
	if lf.configuration == nil || lf.resiliency == nil {
		t.Fatal("components/ has no Configuration or no Resiliency")
	}
	return lf
}

// daprRun is the part of dapr.yaml the chart must agree with.
type daprRun struct {
	Common struct {
		ConfigFilePath         string `json:"configFilePath"`
		AppProtocol            string `json:"appProtocol"`
		EnableAppHealthCheck   bool   `json:"enableAppHealthCheck"`
		AppHealthCheckPath     string `json:"appHealthCheckPath"`
		AppHealthProbeInterval int    `json:"appHealthProbeInterval"`
		AppHealthThreshold     int    `json:"appHealthThreshold"`
		DaprHTTPMaxRequestSize int    `json:"daprHTTPMaxRequestSize"` // MiB
	} `json:"common"`
	Apps []struct {
		AppID   string            `json:"appID"`
		AppPort int               `json:"appPort"`
		Command []string          `json:"command"`
		Env     map[string]string `json:"env"`
	} `json:"apps"`
}

func loadDaprRun(t *testing.T) daprRun {
	t.Helper()
	var d daprRun
	if err := yaml.Unmarshal(readFile(t, "dapr.yaml"), &d); err != nil {
		t.Fatalf("dapr.yaml: %v", err)
	}
	if len(d.Apps) == 0 {
		t.Fatal("dapr.yaml lists no apps")
	}
	return d
}

// localEnv reads deploy/local.env (KEY=value lines).
func localEnv(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	for line := range strings.SplitSeq(string(readFile(t, "deploy/local.env")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			env[k] = strings.Trim(v, `'"`)
		}
	}
	return env
}

// parseDir parses the non-test Go files of one directory of the repository.
func parseDir(t *testing.T, rel string, mode parser.Mode) []*ast.File {
	t.Helper()
	dir := filepath.Join(repoRoot, rel)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, mode)
		if err != nil {
			t.Fatalf("parse %s: %v", filepath.Join(rel, name), err)
		}
		files = append(files, f)
	}
	return files
}

// stringConsts are the string constants declared in files.
func stringConsts(files []*ast.File) map[string]string {
	out := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if v, ok := stringLit(vs.Values[i]); ok {
							out[n.Name] = v
						}
					}
				}
			}
		}
	}
	return out
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// codeTopics are the lifecycle topics: what internal/adapters/events.Topics returns.
func codeTopics(t *testing.T) []string {
	t.Helper()
	files := parseDir(t, "internal/adapters/events", 0)
	consts := stringConsts(files)
	var topics []string
	for _, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "Topics" || fn.Recv != nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				lit, ok := n.(*ast.CompositeLit)
				if !ok {
					return true
				}
				for _, el := range lit.Elts {
					switch el := el.(type) {
					case *ast.Ident:
						if v, ok := consts[el.Name]; ok {
							topics = append(topics, v)
						} else {
							t.Fatalf("events.Topics: %s is not a string constant of the package", el.Name)
						}
					default:
						if v, ok := stringLit(el); ok {
							topics = append(topics, v)
						} else {
							t.Fatalf("events.Topics: an element the test cannot read")
						}
					}
				}
				return false
			})
		}
	}
	if len(topics) == 0 {
		t.Fatal("found no topics in internal/adapters/events.Topics")
	}
	slices.Sort(topics)
	return topics
}

// envReaders are the methods of internal/platform/env.Reader that read one variable
// (its name the first argument).
var envReaders = map[string]bool{
	"String": true, "Int": true, "Port": true, "Duration": true, "Bool": true,
	"Float": true, "Required": true, "Valid": true, "Secret": true,
}

// envRead lists the environment variables read through env.Reader in the given
// directories (non-test files), and which of them are required.
func envRead(t *testing.T, dirs ...string) (read, required map[string]bool) {
	t.Helper()
	read, required = map[string]bool{}, map[string]bool{}
	for _, dir := range dirs {
		for _, f := range parseDir(t, dir, 0) {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !envReaders[sel.Sel.Name] {
					return true
				}
				name, ok := stringLit(call.Args[0])
				if !ok || name == "" || strings.ToUpper(name) != name {
					return true
				}
				read[name] = true
				if sel.Sel.Name == "Required" {
					required[name] = true
				}
				return true
			})
		}
	}
	if len(read) == 0 {
		t.Fatalf("found no environment variables read in %v", dirs)
	}
	return read, required
}

// mainDir is the directory of an app's main package (as the Dockerfile builds it).
func mainDir(app string) string {
	if app == "analytics" {
		return "analytics"
	}
	return "apps/" + app
}

// moduleImports follows the imports of the package in dir (relative to the repository
// root) through the module's own packages, and returns every directory reached.
func moduleImports(t *testing.T, dir string) []string {
	t.Helper()
	seen := map[string]bool{}
	var visit func(string)
	visit = func(d string) {
		if seen[d] {
			return
		}
		seen[d] = true
		for _, f := range parseDir(t, d, parser.ImportsOnly) {
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if rel, ok := strings.CutPrefix(p, modulePath+"/"); ok {
					visit(rel)
				}
			}
		}
	}
	visit(dir)
	return slices.Sorted(func(yield func(string) bool) {
		for d := range seen {
			if !yield(d) {
				return
			}
		}
	})
}

// metricNames are the Prometheus metric names the code declares: string literals that
// start with "taskgrid_" in the non-test files of the given directories.
func metricNames(t *testing.T, dirs ...string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, dir := range dirs {
		for _, f := range parseDir(t, dir, 0) {
			ast.Inspect(f, func(n ast.Node) bool {
				if s, ok := stringLit(exprOrNil(n)); ok && strings.HasPrefix(s, "taskgrid_") {
					out[s] = true
				}
				return true
			})
		}
	}
	return out
}

func exprOrNil(n ast.Node) ast.Expr {
	if e, ok := n.(ast.Expr); ok {
		return e
	}
	return nil
}
