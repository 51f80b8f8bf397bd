package kubernetes

import (
	"encoding/json"
	"errors"
	"go/ast"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// apps are the Dapr app ids, as dapr.yaml names them.
var apps = []string{"analytics", "gateway", "storekeeper", "worker"}

// workload is the pod template of one app, wherever it lives.
type workload struct {
	Kind, Name string
	Selector   *metav1.LabelSelector
	Replicas   *int32
	Template   corev1.PodTemplateSpec
}

// workloads finds each app's Deployment or StatefulSet by its dapr.io/app-id.
func workloads(t *testing.T, r release) map[string]workload {
	t.Helper()
	out := map[string]workload{}
	add := func(w workload) {
		id := w.Template.Annotations["dapr.io/app-id"]
		if id == "" {
			t.Errorf("%s %s: its pods are not Dapr apps (no dapr.io/app-id)", w.Kind, w.Name)
			return
		}
		if _, dup := out[id]; dup {
			t.Errorf("app id %s is used by two workloads", id)
		}
		out[id] = w
	}
	for _, o := range r.all("Deployment") {
		d := o.Obj.(*appsv1.Deployment)
		add(workload{"Deployment", d.Name, d.Spec.Selector, d.Spec.Replicas, d.Spec.Template})
	}
	for _, o := range r.all("StatefulSet") {
		s := o.Obj.(*appsv1.StatefulSet)
		add(workload{"StatefulSet", s.Name, s.Spec.Selector, s.Spec.Replicas, s.Spec.Template})
	}
	return out
}

func appContainer(t *testing.T, w workload) corev1.Container {
	t.Helper()
	if len(w.Template.Spec.Containers) != 1 {
		t.Fatalf("%s %s: %d containers, want the app's only (the injector adds daprd)", w.Kind, w.Name, len(w.Template.Spec.Containers))
	}
	return w.Template.Spec.Containers[0]
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func atoi(t *testing.T, what, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s = %q: not a number", what, s)
	}
	return n
}

// The chart passes Helm's own linter (as `helm lint` runs it) with no warning.
func TestChartLints(t *testing.T) {
	kv, err := common.ParseKubeVersion("v1.33.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, files := range [][]string{nil, {"values/single-node.yaml"}} {
		l := lint.RunAll(chartDir, values(t, files, nil), namespace, lint.WithKubeVersion(kv))
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("lint %v: %s", files, m)
			}
		}
	}
}

// Every object of every variant decodes strictly into its type, and each variant
// renders the objects it should.
func TestRenderDecodesStrictly(t *testing.T) {
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			count := map[string]int{}
			seen := map[string]bool{}
			for _, o := range r.objects {
				count[o.Kind]++
				key := o.Kind + "/" + o.Name
				if seen[key] {
					t.Errorf("%s rendered twice", key)
				}
				seen[key] = true
			}
			want := map[string]int{
				"Deployment": 2, "StatefulSet": 2, "PodDisruptionBudget": 4, "PersistentVolumeClaim": 1,
				"ServiceAccount": 1, "Component": 4, "Configuration": 1, "Resiliency": 1,
			}
			for kind, n := range want {
				if count[kind] != n {
					t.Errorf("%d %s, want %d", count[kind], kind, n)
				}
			}
			if len(workloads(t, r)) != len(apps) {
				t.Errorf("workloads of apps %v, want %v", slices.Sorted(maps.Keys(workloads(t, r))), apps)
			}
		})
	}
}

// The apps are those of dapr.yaml, with the same ids, ports, protocol and health checks.
func TestAppsMatchDaprYAML(t *testing.T) {
	d := loadDaprRun(t)
	var ids []string
	for _, a := range d.Apps {
		ids = append(ids, a.AppID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, apps) {
		t.Fatalf("dapr.yaml apps %v, the test knows %v", ids, apps)
	}
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			ws := workloads(t, r)
			for _, a := range d.Apps {
				w, ok := ws[a.AppID]
				if !ok {
					t.Errorf("no workload for app %s", a.AppID)
					continue
				}
				ann := w.Template.Annotations
				c := appContainer(t, w)
				env := envOf(c)
				// dapr.yaml's appPort is the app channel (what daprd calls); its env
				// PUBLIC_PORT is the app's public listener.
				port := strconv.Itoa(a.AppPort)
				public := a.Env["PUBLIC_PORT"]
				if public == "" || public == port {
					t.Errorf("%s: dapr.yaml gives PUBLIC_PORT %q beside appPort %s: want a port of its own", a.AppID, public, port)
				}
				checks := map[string][2]string{
					"dapr.io/app-port":                  {ann["dapr.io/app-port"], port},
					"env APP_PORT":                      {env["APP_PORT"].Value, port},
					"containerPort http":                {strconv.Itoa(int(containerPort(c, "http"))), public},
					"env PUBLIC_PORT":                   {env["PUBLIC_PORT"].Value, public},
					"env APP_ID":                        {env["APP_ID"].Value, a.AppID},
					"container name":                    {c.Name, a.AppID},
					"dapr.io/app-protocol":              {ann["dapr.io/app-protocol"], d.Common.AppProtocol},
					"dapr.io/enable-app-health-check":   {ann["dapr.io/enable-app-health-check"], strconv.FormatBool(d.Common.EnableAppHealthCheck)},
					"dapr.io/app-health-check-path":     {ann["dapr.io/app-health-check-path"], d.Common.AppHealthCheckPath},
					"dapr.io/app-health-probe-interval": {ann["dapr.io/app-health-probe-interval"], strconv.Itoa(d.Common.AppHealthProbeInterval)},
					"dapr.io/app-health-threshold":      {ann["dapr.io/app-health-threshold"], strconv.Itoa(d.Common.AppHealthThreshold)},
					"dapr.io/max-body-size":             {ann["dapr.io/max-body-size"], strconv.Itoa(d.Common.DaprHTTPMaxRequestSize) + "Mi"},
				}
				for what, gw := range checks {
					if gw[0] != gw[1] {
						t.Errorf("%s: %s = %q, dapr.yaml says %q", a.AppID, what, gw[0], gw[1])
					}
				}
				// The image is the app's own (dapr.yaml runs ./bin/<app>).
				if len(a.Command) == 0 || filepath.Base(a.Command[0]) != a.AppID {
					t.Errorf("%s: dapr.yaml runs %v, the test expects ./bin/%s", a.AppID, a.Command, a.AppID)
				}
				if !strings.Contains(c.Image, "-"+a.AppID+":") {
					t.Errorf("%s: image %s is not the app's", a.AppID, c.Image)
				}
			}
		})
	}
}

// The sidecar annotations Dapr 1.18's injector knows (pkg/injector/patcher/sidecar.go):
// a misspelt annotation is silently ignored by the injector, so it fails here.
var knownDaprAnnotations = []string{
	"dapr.io/enabled", "dapr.io/app-port", "dapr.io/config", "dapr.io/app-protocol", "dapr.io/app-ssl",
	"dapr.io/app-id", "dapr.io/enable-profiling", "dapr.io/log-level", "dapr.io/api-token-secret",
	"dapr.io/app-token-secret", "dapr.io/log-as-json", "dapr.io/app-max-concurrency", "dapr.io/enable-metrics",
	"dapr.io/metrics-port", "dapr.io/enable-debug", "dapr.io/debug-port", "dapr.io/env", "dapr.io/env-from-secret",
	"dapr.io/grpc-port", "dapr.io/internal-grpc-port", "dapr.io/sidecar-cpu-request", "dapr.io/sidecar-cpu-limit",
	"dapr.io/sidecar-memory-request", "dapr.io/sidecar-memory-limit", "dapr.io/sidecar-listen-addresses",
	"dapr.io/sidecar-liveness-probe-delay-seconds", "dapr.io/sidecar-liveness-probe-timeout-seconds",
	"dapr.io/sidecar-liveness-probe-period-seconds", "dapr.io/sidecar-liveness-probe-threshold",
	"dapr.io/sidecar-readiness-probe-delay-seconds", "dapr.io/sidecar-readiness-probe-timeout-seconds",
	"dapr.io/sidecar-readiness-probe-period-seconds", "dapr.io/sidecar-readiness-probe-threshold",
	"dapr.io/sidecar-image", "dapr.io/sidecar-seccomp-profile-type", "dapr.io/http-max-request-size",
	"dapr.io/max-body-size", "dapr.io/http-read-buffer-size", "dapr.io/read-buffer-size",
	"dapr.io/graceful-shutdown-seconds", "dapr.io/block-shutdown-duration", "dapr.io/enable-api-logging",
	"dapr.io/unix-domain-socket-path", "dapr.io/volume-mounts", "dapr.io/volume-mounts-rw",
	"dapr.io/disable-builtin-k8s-secret-store", "dapr.io/enable-app-health-check", "dapr.io/app-health-check-path",
	"dapr.io/app-health-probe-interval", "dapr.io/app-health-probe-timeout", "dapr.io/app-health-threshold",
	"dapr.io/placement-host-address", "dapr.io/actors-disseminate-timeout", "dapr.io/scheduler-host-address",
	"dapr.io/pluggable-components", "dapr.io/pluggable-components-sockets-folder", "dapr.io/component-container",
	"dapr.io/inject-pluggable-components", "dapr.io/app-channel-address", "dapr.io/sentry-request-jwt-audiences",
	"dapr.io/sidecar-svc-annotations", "dapr.io/disable-init-endpoints", "dapr.io/enable-native-sidecar",
}

// The annotations every taskgrid pod must carry.
var requiredDaprAnnotations = []string{
	"dapr.io/enabled", "dapr.io/app-id", "dapr.io/app-port", "dapr.io/app-protocol", "dapr.io/config",
	"dapr.io/enable-app-health-check", "dapr.io/app-health-check-path", "dapr.io/app-health-probe-interval",
	"dapr.io/app-health-threshold", "dapr.io/enable-metrics", "dapr.io/metrics-port",
	"dapr.io/api-token-secret", "dapr.io/app-token-secret",
	"dapr.io/sidecar-cpu-request", "dapr.io/sidecar-cpu-limit", "dapr.io/sidecar-memory-request", "dapr.io/sidecar-memory-limit",
	"dapr.io/block-shutdown-duration", "dapr.io/graceful-shutdown-seconds",
}

// daprdPorts are the ports daprd takes in the pod (its defaults: HTTP 3500, public
// health 3501, gRPC API 50001, internal gRPC 50002); the metrics port comes on top.
var daprdPorts = []int{3500, 3501, 50001, 50002}

func TestDaprAnnotations(t *testing.T) {
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			configs := map[string]bool{}
			for _, o := range r.all("Configuration") {
				configs[o.Name] = true
			}
			for id, w := range workloads(t, r) {
				ann := w.Template.Annotations
				for _, k := range requiredDaprAnnotations {
					if ann[k] == "" {
						t.Errorf("%s: annotation %s missing", id, k)
					}
				}
				for k := range ann {
					if strings.HasPrefix(k, "dapr.io/") && !slices.Contains(knownDaprAnnotations, k) {
						t.Errorf("%s: annotation %s is not one Dapr's injector reads", id, k)
					}
				}
				for _, k := range []string{"dapr.io/enabled", "dapr.io/enable-metrics", "dapr.io/enable-app-health-check"} {
					if ann[k] != "true" {
						t.Errorf("%s: %s = %q, want true", id, k, ann[k])
					}
				}
				if !configs[ann["dapr.io/config"]] {
					t.Errorf("%s: dapr.io/config %q names no rendered Configuration (have %v)", id, ann["dapr.io/config"], slices.Sorted(maps.Keys(configs)))
				}
				appPort := atoi(t, id+" app-port", ann["dapr.io/app-port"])
				metricsPort := atoi(t, id+" metrics-port", ann["dapr.io/metrics-port"])
				if slices.Contains(daprdPorts, appPort) || appPort == metricsPort || appPort < 1024 || appPort > 65535 {
					t.Errorf("%s: app port %d collides with daprd's ports %v or metrics port %d, or is privileged", id, appPort, daprdPorts, metricsPort)
				}
				if slices.Contains(daprdPorts, metricsPort) || metricsPort < 1024 || metricsPort > 65535 {
					t.Errorf("%s: metrics port %d collides with daprd's ports %v", id, metricsPort, daprdPorts)
				}
				for _, res := range []string{"cpu", "memory"} {
					req, err1 := resource.ParseQuantity(ann["dapr.io/sidecar-"+res+"-request"])
					lim, err2 := resource.ParseQuantity(ann["dapr.io/sidecar-"+res+"-limit"])
					if err := errors.Join(err1, err2); err != nil {
						t.Errorf("%s: sidecar %s: %v", id, res, err)
					} else if req.Cmp(lim) > 0 {
						t.Errorf("%s: sidecar %s request %s above its limit %s", id, res, req.String(), lim.String())
					}
				}
				// The app sends the API token the sidecar expects: the same secret.
				tok := envOf(appContainer(t, w))["DAPR_API_TOKEN"]
				if tok.ValueFrom == nil || tok.ValueFrom.SecretKeyRef == nil ||
					tok.ValueFrom.SecretKeyRef.Name != ann["dapr.io/api-token-secret"] || tok.ValueFrom.SecretKeyRef.Key != "token" {
					t.Errorf("%s: DAPR_API_TOKEN must come from secret %q key \"token\" (as the injector reads it), got %+v",
						id, ann["dapr.io/api-token-secret"], tok)
				}
				if ann["dapr.io/app-token-secret"] == ann["dapr.io/api-token-secret"] {
					t.Errorf("%s: the app token and the API token are the same secret", id)
				}
				// The sidecar outlives the app's own shutdown, within the pod's grace period.
				block, err := time.ParseDuration(ann["dapr.io/block-shutdown-duration"])
				if err != nil {
					t.Errorf("%s: block-shutdown-duration: %v", id, err)
				}
				graceful := time.Duration(atoi(t, id+" graceful-shutdown-seconds", ann["dapr.io/graceful-shutdown-seconds"])) * time.Second
				grace := time.Duration(*w.Template.Spec.TerminationGracePeriodSeconds) * time.Second
				if block < 10*time.Second || block+graceful >= grace {
					t.Errorf("%s: block-shutdown %v + graceful shutdown %v must fit in the grace period %v, and block at least 10 s",
						id, block, graceful, grace)
				}
			}
		})
	}
}

// The components are those of components/: the same names, types, versions, metadata
// keys and scopes. What may differ is listed here and nowhere else.
func TestComponentsMatchLocal(t *testing.T) {
	local := loadLocal(t)
	const (
		localStore = "envsecrets" // secretstores.local.env: the sidecar's environment
		k8sStore   = "kubernetes" // Dapr's built-in store, resolved by the Dapr operator
	)
	// Metadata keys only the chart has.
	k8sOnly := map[string][]string{"statestore": {"redisPassword"}}
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			rendered := map[string]*Component{}
			for _, o := range r.all("Component") {
				rendered[o.Name] = o.Obj.(*Component)
			}
			var want []string
			for n := range local.components {
				if n != localStore {
					want = append(want, n)
				}
			}
			slices.Sort(want)
			if got := slices.Sorted(maps.Keys(rendered)); !slices.Equal(got, want) {
				t.Fatalf("components %v, want those of components/ but %s: %v", got, localStore, want)
			}
			if _, ok := local.components[localStore]; !ok {
				t.Fatalf("components/ has no %s: update this test", localStore)
			}
			secretNames := map[string]bool{}
			brokers := ""
			for _, n := range want {
				lc, kc := local.components[n], rendered[n]
				if kc.APIVersion != lc.APIVersion || kc.Spec.Type != lc.Spec.Type || kc.Spec.Version != lc.Spec.Version || kc.Spec.IgnoreErrors != lc.Spec.IgnoreErrors {
					t.Errorf("%s: %s %s %s ignoreErrors=%v, components/ has %s %s %s ignoreErrors=%v", n,
						kc.APIVersion, kc.Spec.Type, kc.Spec.Version, kc.Spec.IgnoreErrors, lc.APIVersion, lc.Spec.Type, lc.Spec.Version, lc.Spec.IgnoreErrors)
				}
				if !slices.Equal(slices.Sorted(slices.Values(kc.Scopes)), slices.Sorted(slices.Values(lc.Scopes))) {
					t.Errorf("%s: scopes %v, components/ has %v", n, kc.Scopes, lc.Scopes)
				}
				if lc.Auth != nil && lc.Auth.SecretStore == localStore {
					if kc.Auth == nil || kc.Auth.SecretStore != k8sStore {
						t.Errorf("%s: auth.secretStore must be %q", n, k8sStore)
					}
				}
				lm, km := map[string]NameValue{}, map[string]NameValue{}
				for _, m := range lc.Spec.Metadata {
					lm[m.Name] = m
				}
				for _, m := range kc.Spec.Metadata {
					if _, dup := km[m.Name]; dup {
						t.Errorf("%s: metadata %s twice", n, m.Name)
					}
					km[m.Name] = m
				}
				for _, k := range k8sOnly[n] {
					if m, ok := km[k]; ok && m.SecretKeyRef == nil {
						t.Errorf("%s: %s must come from a secret", n, k)
					}
					delete(km, k)
				}
				if got, want := slices.Sorted(maps.Keys(km)), slices.Sorted(maps.Keys(lm)); !slices.Equal(got, want) {
					t.Errorf("%s: metadata keys %v, components/ has %v", n, got, want)
				}
				for k, l := range lm {
					m, ok := km[k]
					if !ok {
						continue
					}
					switch {
					case k == "brokers":
						// Locally a secret (the local broker's address); here the Kafka
						// cluster's bootstrap address, checked in TestKafka.
						if m.Value == nil || *m.Value == "" {
							t.Errorf("%s: brokers has no value", n)
						} else if brokers != "" && brokers != *m.Value {
							t.Errorf("%s: brokers %q, another component has %q", n, *m.Value, brokers)
						} else {
							brokers = *m.Value
						}
					case l.SecretKeyRef != nil:
						if m.SecretKeyRef == nil || m.SecretKeyRef.Name == "" || m.SecretKeyRef.Key == "" || m.Value != nil {
							t.Errorf("%s: %s is a secret in components/, here %+v", n, k, m)
						} else {
							secretNames[m.SecretKeyRef.Name] = true
						}
					case l.Value != nil:
						if m.Value == nil || *m.Value != *l.Value {
							t.Errorf("%s: %s = %v, components/ has %q", n, k, deref(m.Value), *l.Value)
						}
					default:
						t.Errorf("%s: %s in components/ is neither a value nor a secret: update this test", n, k)
					}
				}
			}
			for s := range secretNames {
				if !strings.HasPrefix(s, "taskgrid-") {
					t.Errorf("secret %q: the chart's secrets are named taskgrid-* (README)", s)
				}
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return strconv.Quote(*s)
}

// The Configuration is components/config.yaml's, minus its local name resolution, plus
// an access control list that admits exactly the service invocations the apps make.
func TestConfigurationMatchesLocal(t *testing.T) {
	local := loadLocal(t).configuration
	r := defaultRelease(t)
	cs := r.all("Configuration")
	if len(cs) != 1 {
		t.Fatalf("%d Configurations, want 1", len(cs))
	}
	c := cs[0].Obj.(*Configuration)
	if c.Metadata.Name != local.Metadata.Name {
		t.Errorf("Configuration %q, components/config.yaml names %q", c.Metadata.Name, local.Metadata.Name)
	}
	if c.Spec.NameResolution != nil {
		t.Errorf("nameResolution %+v: on Kubernetes daprd resolves through Kubernetes' DNS by default", c.Spec.NameResolution)
	}
	if local.Spec.NameResolution == nil {
		t.Errorf("components/config.yaml has no nameResolution any more: update this test")
	}
	// mTLS: on, as locally. (On Kubernetes the injector takes it from the control
	// plane's daprsystem Configuration, which the chart checks at install time; this
	// says the same.) Dapr 1.18's Configuration CRD requires controlPlaneTrustDomain
	// and sentryAddress beside enabled: the API server would refuse the object without.
	if m := local.Spec.MTLS; m == nil || m.Enabled == nil || !*m.Enabled {
		t.Errorf("components/config.yaml does not enable mTLS any more: update the chart and this test")
	}
	if m := c.Spec.MTLS; m == nil || m.Enabled == nil || !*m.Enabled {
		t.Errorf("the Configuration's spec.mtls %+v: want enabled: true, as components/config.yaml", m)
	} else if m.ControlPlaneTrustDomain == "" || m.SentryAddress == "" {
		t.Errorf("spec.mtls controlPlaneTrustDomain %q sentryAddress %q: Dapr's Configuration CRD requires both", m.ControlPlaneTrustDomain, m.SentryAddress)
	} else if want := "dapr-sentry.dapr-system.svc.cluster.local:443"; m.SentryAddress != want {
		t.Errorf("spec.mtls sentryAddress %q, want the control plane's Sentry %q", m.SentryAddress, want)
	}
	same := func(what string, a, b any) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Errorf("%s: %s, components/config.yaml has %s", what, ja, jb)
		}
	}
	same("metric", c.Spec.Metric, local.Spec.Metric)
	same("features", c.Spec.Features, local.Spec.Features)

	ac := c.Spec.AccessControl
	if ac == nil {
		t.Fatal("no accessControl")
	}
	// The access control list is components/config.yaml's, but for the policies'
	// namespace: the release's here, "default" locally (self-hosted daprd's).
	if local.Spec.AccessControl == nil || len(local.Spec.AccessControl.Policies) == 0 {
		t.Fatal("components/config.yaml has no accessControl policies: update this test")
	}
	localAC := *local.Spec.AccessControl
	localAC.Policies = slices.Clone(localAC.Policies)
	for i, p := range localAC.Policies {
		if p.Namespace != "default" {
			t.Errorf("components/config.yaml: policy of %s has namespace %q, want default (self-hosted)", p.AppID, p.Namespace)
		}
		localAC.Policies[i].Namespace = namespace
	}
	byApp := func(a, b AppPolicy) int { return strings.Compare(a.AppID, b.AppID) }
	chartAC := *ac
	chartAC.Policies = slices.SortedFunc(slices.Values(ac.Policies), byApp) // order means nothing to Dapr
	slices.SortFunc(localAC.Policies, byApp)
	same("accessControl (namespace: the release's)", chartAC, localAC)
	if ac.DefaultAction != "deny" || ac.TrustDomain != "public" {
		t.Errorf("accessControl defaultAction %q trustDomain %q, want deny, public", ac.DefaultAction, ac.TrustDomain)
	}
	type rule struct{ App, Op, Verb string }
	var rules []rule
	for _, p := range ac.Policies {
		if p.DefaultAction != "deny" || p.Namespace != namespace || p.TrustDomain != ac.TrustDomain {
			t.Errorf("policy of %s: defaultAction %q namespace %q trustDomain %q, want deny, %q, %q",
				p.AppID, p.DefaultAction, p.Namespace, p.TrustDomain, namespace, ac.TrustDomain)
		}
		for _, op := range p.Operations {
			if op.Action != "allow" {
				t.Errorf("policy of %s: %s %v is %q: list only what is allowed", p.AppID, op.Name, op.HTTPVerb, op.Action)
			}
			for _, v := range op.HTTPVerb {
				rules = append(rules, rule{p.AppID, op.Name, v})
			}
		}
	}
	want := []rule{{"gateway", "/overview", "GET"}, {"gateway", "/results/*", "GET"}, {"worker", "/results", "POST"}}
	byRule := func(a, b rule) int { return strings.Compare(a.App+a.Op+a.Verb, b.App+b.Op+b.Verb) }
	if !slices.Equal(slices.SortedFunc(slices.Values(rules), byRule), want) {
		t.Errorf("access control allows %+v, want %+v", rules, want)
	}

	// The code: the service invocations the apps make are exactly what the rules allow,
	// and the apps that use the storekeeper's client are those with a policy.
	calls := serviceInvocations(t)
	var allowed []string
	for _, r := range rules {
		allowed = append(allowed, r.Verb+" "+strings.TrimPrefix(r.Op, "/"))
	}
	slices.Sort(allowed)
	if !slices.Equal(calls, allowed) {
		t.Errorf("the code invokes %v, the access control list allows %v", calls, allowed)
	}
	var callers, policyApps []string
	for _, app := range apps {
		for _, d := range moduleImports(t, mainDir(app)) {
			if d == "internal/adapters/storekeeper" {
				callers = append(callers, app)
			}
		}
	}
	for _, p := range ac.Policies {
		policyApps = append(policyApps, p.AppID)
	}
	slices.Sort(policyApps)
	if !slices.Equal(callers, policyApps) {
		t.Errorf("apps using the storekeeper's client %v, apps with a policy %v", callers, policyApps)
	}
}

// serviceInvocations lists "VERB method" of every service invocation in the apps' code
// (InvokeMethod / InvokeMethodWithContent with literal arguments; a method built as
// "prefix" + x is listed as "prefix*").
func serviceInvocations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	for _, app := range apps {
		dirs = append(dirs, moduleImports(t, mainDir(app))...)
	}
	slices.Sort(dirs)
	dirs = slices.Compact(dirs)
	var out []string
	for _, d := range dirs {
		for _, f := range parseDir(t, d, 0) {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !strings.HasPrefix(sel.Sel.Name, "InvokeMethod") || len(call.Args) < 4 {
					return true
				}
				method, ok := stringLit(call.Args[2])
				if !ok {
					if b, isBin := call.Args[2].(*ast.BinaryExpr); isBin {
						if prefix, ok2 := stringLit(b.X); ok2 {
							method, ok = prefix+"*", true
						}
					}
				}
				verb, ok2 := stringLit(call.Args[3])
				if !ok || !ok2 {
					t.Errorf("%s: a service invocation the test cannot read", d)
					return true
				}
				out = append(out, strings.ToUpper(verb)+" "+method)
				return true
			})
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		t.Fatal("found no service invocation in the apps' code")
	}
	return out
}

// The Resiliency is components/resiliency.yaml's.
func TestResiliencyMatchesLocal(t *testing.T) {
	local := loadLocal(t).resiliency
	rs := defaultRelease(t).all("Resiliency")
	if len(rs) != 1 {
		t.Fatalf("%d Resiliency, want 1", len(rs))
	}
	got := rs[0].Obj.(*Resiliency)
	if got.Metadata.Name != local.Metadata.Name || got.APIVersion != local.APIVersion {
		t.Errorf("Resiliency %s %q, components/ has %s %q", got.APIVersion, got.Metadata.Name, local.APIVersion, local.Metadata.Name)
	}
	// What daprd makes of the local file: decoded into its Resiliency type, which drops
	// initialInterval (the only field the local file may have beyond it).
	lj, err := json.Marshal(local.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var effective ResiliencySpec[Retry]
	if err := json.Unmarshal(lj, &effective); err != nil {
		t.Fatal(err)
	}
	ej, _ := json.Marshal(effective)
	gj, _ := json.Marshal(got.Spec)
	if string(ej) != string(gj) {
		t.Errorf("spec\n%s\ncomponents/resiliency.yaml as daprd reads it\n%s", gj, ej)
	}
	if len(local.Spec.Policies.Retries) == 0 || len(got.Spec.Targets.Components) == 0 {
		t.Error("no retries or no targets: nothing compared")
	}
}
