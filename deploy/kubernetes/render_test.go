// Package kubernetes holds only tests: they render the Helm chart in chart/ with Helm
// v4's loader and engine as a library, decode every object strictly (unknown fields
// fail), and hold the result against the local files (../../components, ../../dapr.yaml)
// and the apps' code, so the two cannot drift. Nothing here needs a cluster.
package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

const (
	chartDir    = "chart"
	repoRoot    = "../.."
	releaseName = "taskgrid"
	namespace   = "taskgrid"
)

// object is one rendered document, decoded strictly into its type.
type object struct {
	Source string // the template it came from
	Kind   string
	Name   string
	Obj    any // *appsv1.Deployment, *Component, ...
}

// release is everything one rendering produced, by kind.
type release struct {
	objects []object
	values  map[string]any // the values given (files and overrides merged), not the chart's defaults
}

func (r release) all(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func one[T any](t *testing.T, r release, kind, name string) T {
	t.Helper()
	for _, o := range r.all(kind) {
		if o.Name == name {
			return o.Obj.(T)
		}
	}
	t.Fatalf("no %s %q rendered", kind, name)
	var zero T
	return zero
}

// decoders: every kind the chart may render, and the type it must decode into. A kind
// that is not here fails the test.
var decoders = map[string]func() any{
	"apps/v1/Deployment":                func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":               func() any { return new(appsv1.StatefulSet) },
	"v1/Service":                        func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                 func() any { return new(corev1.ServiceAccount) },
	"v1/Secret":                         func() any { return new(corev1.Secret) },
	"v1/PersistentVolumeClaim":          func() any { return new(corev1.PersistentVolumeClaim) },
	"policy/v1/PodDisruptionBudget":     func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/Ingress":      func() any { return new(networkingv1.Ingress) },
	"dapr.io/v1alpha1/Component":        func() any { return new(Component) },
	"dapr.io/v1alpha1/Configuration":    func() any { return new(Configuration) },
	"dapr.io/v1alpha1/Resiliency":       func() any { return new(Resiliency) },
	"kafka.strimzi.io/v1/Kafka":         func() any { return new(Kafka) },
	"kafka.strimzi.io/v1/KafkaNodePool": func() any { return new(KafkaNodePool) },
	"kafka.strimzi.io/v1/KafkaTopic":    func() any { return new(KafkaTopic) },
	"kafka.strimzi.io/v1beta2/Kafka":    func() any { return new(Kafka) },
	"kafka.strimzi.io/v1beta2/KafkaNodePool": func() any {
		return new(KafkaNodePool)
	},
	"kafka.strimzi.io/v1beta2/KafkaTopic": func() any { return new(KafkaTopic) },
	"keda.sh/v1alpha1/ScaledObject":       func() any { return new(ScaledObject) },
	"monitoring.coreos.com/v1/PodMonitor": func() any { return new(PodMonitor) },
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.LoadDir(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// values reads values files (relative to this directory) and merges them, later ones
// winning, then the overrides.
func values(t *testing.T, files []string, overrides map[string]any) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, f := range files {
		v, err := common.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		vals = merge(vals, v.AsMap())
	}
	return merge(vals, overrides)
}

func merge(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = merge(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// renderErr renders the chart as `helm install` would (strict: a template that reads a
// value that is not there fails), without a cluster.
func renderErr(t *testing.T, files []string, overrides map[string]any) (map[string]string, error) {
	t.Helper()
	c := loadChart(t)
	vals, err := util.ToRenderValues(c, values(t, files, overrides),
		common.ReleaseOptions{Name: releaseName, Namespace: namespace, IsInstall: true, Revision: 1}, nil)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.RenderWithContext(context.Background(), c, vals)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// render renders and decodes every object strictly; it fails the test on any error.
func render(t *testing.T, files []string, overrides map[string]any) release {
	t.Helper()
	out, err := renderErr(t, files, overrides)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r := release{values: values(t, files, overrides)}
	for _, path := range slices.Sorted(maps.Keys(out)) {
		base := filepath.Base(path)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		for i, doc := range docSeparator.Split(out[path], -1) {
			if isBlank(doc) {
				continue
			}
			o, err := decode([]byte(doc))
			if err != nil {
				t.Fatalf("%s, document %d: %v\n%s", path, i, err, doc)
			}
			o.Source = path
			r.objects = append(r.objects, o)
		}
	}
	if len(r.objects) == 0 {
		t.Fatal("the chart rendered nothing")
	}
	return r
}

func isBlank(doc string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
			return false
		}
	}
	return true
}

// decode reads a document's apiVersion and kind, then decodes it strictly into the
// type for that kind: an unknown or duplicate field is an error.
func decode(doc []byte) (object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return object{}, fmt.Errorf("not YAML: %w", err)
	}
	mk, ok := decoders[head.APIVersion+"/"+head.Kind]
	if !ok {
		return object{}, fmt.Errorf("no decoder for %s %s (add its type to decoders)", head.APIVersion, head.Kind)
	}
	if head.Metadata.Name == "" {
		return object{}, fmt.Errorf("%s without metadata.name", head.Kind)
	}
	if head.Metadata.Namespace != "" {
		return object{}, fmt.Errorf("%s %s sets its namespace; the release's namespace applies", head.Kind, head.Metadata.Name)
	}
	obj := mk()
	if err := strictUnmarshal(doc, obj); err != nil {
		return object{}, fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
	}
	return object{Kind: head.Kind, Name: head.Metadata.Name, Obj: obj}, nil
}

// strictUnmarshal is sigs.k8s.io/yaml's strict decoding (YAML to JSON, then a JSON
// decoder that refuses unknown fields), plus a second check with encoding/json's
// DisallowUnknownFields, which also covers types with custom unmarshallers.
func strictUnmarshal(doc []byte, into any) error {
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}

// readFile reads a file of the repository (relative to its root).
func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return data
}

// defaultRelease renders the chart with its default values.
func defaultRelease(t *testing.T) release { return render(t, nil, nil) }

// variants are the value sets every structural test runs on: the defaults, each
// example values file, and combinations the examples do not cover.
func variants(t *testing.T) map[string]release {
	t.Helper()
	out := map[string]release{"defaults": defaultRelease(t)}
	files, err := filepath.Glob("values/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no values/*.yaml: %v", err)
	}
	for _, f := range files {
		out[f] = render(t, []string{f}, nil)
	}
	out["external-kafka,no-ingress,prefetch-0,sync-gap,store-spacing,held-results,submit-spacing,accepted-delay,podmonitor,no-redis-password,anonymous-api,retention"] = render(t, nil, map[string]any{
		"taskRetention": "2h",
		"kafka":         map[string]any{"create": false, "bootstrapServers": "kafka-0.kafka.example:9092,kafka-1.kafka.example:9092"},
		"gateway": map[string]any{"ingress": map[string]any{"enabled": false}, "preStopSleepSeconds": 0,
			"apiKeys": map[string]any{"secretName": ""}, "allowAnonymous": true, "submitSpacing": "4ms", "acceptedEventsDelay": "20ms"},
		"worker": map[string]any{"prefetch": 0, "syncGap": "20ms", "storeSpacing": "50ms", "heldResultsMax": 64.0, "heldResultsMaxBytes": 268435456.0, // floats, as from a values file
			"autoscaling": map[string]any{"enabled": false}},
		"metrics": map[string]any{"podMonitor": map[string]any{"enabled": true}},
		"secrets": map[string]any{"redis": map[string]any{"passwordKey": ""}},
	})
	out["strimzi-v1beta2,tls-ingress,existing-token-secrets"] = render(t, nil, map[string]any{
		"kafka":   map[string]any{"apiVersion": "kafka.strimzi.io/v1beta2", "version": "4.1.1"},
		"gateway": map[string]any{"ingress": map[string]any{"tlsSecretName": "taskgrid-tls"}},
		"dapr":    map[string]any{"apiTokenSecret": "my-dapr-api-token", "appTokenSecret": "my-dapr-app-token"},
	})
	return out
}
