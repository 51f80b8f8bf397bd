package kubernetes

import (
	"encoding/base64"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/engine"
)

// What the app and its sidecar authenticate each other with (commit bbefb99): the
// sidecar requires DAPR_API_TOKEN from the app, the app channel requires APP_API_TOKEN
// from the sidecar. Dapr's injector gives daprd both from the Secrets named by the pod's
// annotations, key "token" (pkg/injector/patcher/sidecar_container.go); the app
// container must read the same keys of the same Secrets.
var tokens = []struct {
	env, annotation, value, chartMade string
}{
	{"DAPR_API_TOKEN", "dapr.io/api-token-secret", "apiTokenSecret", releaseName + "-dapr-api-token"},
	{"APP_API_TOKEN", "dapr.io/app-token-secret", "appTokenSecret", releaseName + "-dapr-app-token"},
}

// The key Dapr's injector reads in a token Secret.
const tokenKey = "token"

func givenDapr(r release, key string) string {
	d, _ := r.values["dapr"].(map[string]any)
	s, _ := d[key].(string)
	return s
}

// Every pod names both token Secrets, and its app container reads the same Secrets'
// "token" keys into DAPR_API_TOKEN and APP_API_TOKEN; each Secret is either one the
// values name (made beforehand, not rendered) or the chart's own, with a token in it.
func TestTokens(t *testing.T) {
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			secrets := map[string]*corev1.Secret{}
			for _, o := range r.all("Secret") {
				secrets[o.Name] = o.Obj.(*corev1.Secret)
			}
			used := map[string]bool{}
			for id, w := range workloads(t, r) {
				ann := w.Template.Annotations
				env := envOf(appContainer(t, w))
				for _, tk := range tokens {
					secret := ann[tk.annotation]
					if secret == "" {
						t.Errorf("%s: no %s annotation: the sidecar would take API calls without a token", id, tk.annotation)
						continue
					}
					used[secret] = true
					e, ok := env[tk.env]
					switch {
					case !ok:
						t.Errorf("%s: the app container has no %s", id, tk.env)
					case e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil:
						t.Errorf("%s: %s must come from a secretKeyRef, not %+v", id, tk.env, e)
					case e.ValueFrom.SecretKeyRef.Name != secret || e.ValueFrom.SecretKeyRef.Key != tokenKey:
						t.Errorf("%s: %s from secret %q key %q; the sidecar's comes from %q key %q (%s)", id, tk.env,
							e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key, secret, tokenKey, tk.annotation)
					case e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional:
						t.Errorf("%s: %s is optional: without the Secret the app would run without its token", id, tk.env)
					}
					if given := givenDapr(r, tk.value); given != "" {
						if secret != given {
							t.Errorf("%s: %s = %q, the values name %q", id, tk.annotation, secret, given)
						}
						if _, ok := secrets[secret]; ok {
							t.Errorf("Secret %s is given in the values (made beforehand) but the chart renders it too", secret)
						}
						continue
					}
					if secret != tk.chartMade {
						t.Errorf("%s: %s = %q, want the chart's own %q when dapr.%s is empty", id, tk.annotation, secret, tk.chartMade, tk.value)
					}
					s, ok := secrets[secret]
					if !ok {
						t.Errorf("%s: %s names %q, which the chart does not render and the values do not give", id, tk.annotation, secret)
						continue
					}
					if len(s.Data) != 1 || len(s.Data[tokenKey]) < 32 || s.StringData != nil {
						t.Errorf("Secret %s: want only data.%s with at least 32 bytes, got %d keys, %d bytes", secret, tokenKey, len(s.Data), len(s.Data[tokenKey]))
					}
				}
				if ann["dapr.io/api-token-secret"] == ann["dapr.io/app-token-secret"] {
					t.Errorf("%s: the API token and the app token are the same Secret", id)
				}
			}
			for n := range secrets {
				if !used[n] {
					t.Errorf("Secret %s is rendered but no pod uses it", n)
				}
			}
			if secrets[tokens[0].chartMade] != nil && secrets[tokens[1].chartMade] != nil &&
				string(secrets[tokens[0].chartMade].Data[tokenKey]) == string(secrets[tokens[1].chartMade].Data[tokenKey]) {
				t.Error("the chart made the same token for both Secrets")
			}
		})
	}
}

// renderWithCluster renders the chart with the default values as an upgrade would,
// Helm's lookup answered from objs (see fakeProvider), and returns the token of each
// chart-made Secret.
func renderWithCluster(t *testing.T, objs map[string]*unstructured.Unstructured) map[string]string {
	t.Helper()
	c := loadChart(t)
	vals, err := util.ToRenderValues(c, map[string]any{},
		common.ReleaseOptions{Name: releaseName, Namespace: namespace, IsUpgrade: true, Revision: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := []string{}
	out, err := engine.RenderWithClientProvider(c, vals, fakeProvider{objs: objs, calls: &calls})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	got := map[string]string{}
	for path, text := range out {
		for _, doc := range docSeparator.Split(text, -1) {
			if isBlank(doc) || !strings.HasSuffix(path, ".yaml") {
				continue
			}
			o, err := decode([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if s, ok := o.Obj.(*corev1.Secret); ok {
				got[s.Name] = string(s.Data[tokenKey])
			}
		}
	}
	for _, tk := range tokens {
		key := "v1/Secret " + namespace + "/" + tk.chartMade
		found := false
		for _, c := range calls {
			found = found || c == key
		}
		if !found {
			t.Errorf("the chart did not look up its Secret %s (lookups: %v)", tk.chartMade, calls)
		}
	}
	return got
}

// The chart-made tokens are random at the first install and kept on upgrades (read
// back from the cluster with lookup), so an upgrade never changes a running pod's token.
func TestTokensGeneratedOnceAndKept(t *testing.T) {
	alnum64 := regexp.MustCompile(`^[A-Za-z0-9]{64}$`)
	first, second := renderWithCluster(t, nil), renderWithCluster(t, nil)
	for _, tk := range tokens {
		a, b := first[tk.chartMade], second[tk.chartMade]
		if !alnum64.MatchString(a) {
			t.Errorf("%s: token %q, want 64 random letters and digits", tk.chartMade, a)
		}
		if a == b {
			t.Errorf("%s: two first installs made the same token %q: not random", tk.chartMade, a)
		}
	}
	// The Secrets exist in the cluster (as the first install made them): kept.
	objs := map[string]*unstructured.Unstructured{}
	for i, tk := range tokens {
		token := "kept-" + strconv.Itoa(i) + "-abcdefghijklmnopqrstuvwxyz0123456789"
		objs["v1/Secret "+namespace+"/"+tk.chartMade] = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": tk.chartMade, "namespace": namespace},
			"data":     map[string]any{tokenKey: base64.StdEncoding.EncodeToString([]byte(token))},
		}}
		if got := renderWithCluster(t, objs)[tk.chartMade]; got != token {
			t.Errorf("%s: an upgrade renders token %q, the cluster has %q: it must be kept", tk.chartMade, got, token)
		}
	}
}

// resolvePort is the number a Service's targetPort or a probe's port means in c: a
// number as is, a name through the container's ports (0: no such port).
func resolvePort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	return containerPort(c, p.StrVal)
}

// The app channel (dapr.io/app-port, APP_HOST:APP_PORT) stays inside the pod: the app
// binds it to the pod's loopback, where daprd calls it, and nothing else is pointed at
// it: no container port, no Service, no Ingress, no probe, no scrape. The public
// listener (PUBLIC_HOST 0.0.0.0, PUBLIC_PORT) is the container port everything uses.
func TestAppChannelNotExposed(t *testing.T) {
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			ws := workloads(t, r)
			public := map[string]int32{}
			for id, w := range ws {
				ann := w.Template.Annotations
				c := appContainer(t, w)
				env := envOf(c)
				channel := int32(atoi(t, id+" dapr.io/app-port", ann["dapr.io/app-port"]))
				pub := containerPort(c, "http")
				public[id] = pub
				if got := env["APP_PORT"].Value; got != strconv.Itoa(int(channel)) {
					t.Errorf("%s: APP_PORT %q, dapr.io/app-port %d: the app channel must be where daprd calls", id, got, channel)
				}
				if got := env["APP_HOST"].Value; got != "127.0.0.1" {
					t.Errorf("%s: APP_HOST %q, want 127.0.0.1: the app channel on the pod's loopback only", id, got)
				}
				if addr, ok := ann["dapr.io/app-channel-address"]; ok && addr != env["APP_HOST"].Value {
					t.Errorf("%s: daprd calls the app at %q, the app channel listens on %q", id, addr, env["APP_HOST"].Value)
				}
				if got := env["PUBLIC_HOST"].Value; got != "0.0.0.0" {
					t.Errorf("%s: PUBLIC_HOST %q, want 0.0.0.0 (the kubelet's probes, Services and Prometheus reach it)", id, got)
				}
				if pub == 0 || env["PUBLIC_PORT"].Value != strconv.Itoa(int(pub)) || pub == channel {
					t.Errorf("%s: PUBLIC_PORT %q, container port http %d, app channel %d: want the public listener on its own container port",
						id, env["PUBLIC_PORT"].Value, pub, channel)
				}
				// With the host's network the pod's loopback would be the node's.
				if w.Template.Spec.HostNetwork {
					t.Errorf("%s: hostNetwork: the app channel would be on the node's loopback", id)
				}
				for _, ct := range append(append([]corev1.Container{}, w.Template.Spec.InitContainers...), w.Template.Spec.Containers...) {
					for _, p := range ct.Ports {
						if p.ContainerPort == channel || p.HostPort != 0 {
							t.Errorf("%s: container %s declares port %+v: the app channel (%d) is not a container port, and no host port is used", id, ct.Name, p, channel)
						}
					}
				}
				for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
					if p == nil {
						continue
					}
					var port intstr.IntOrString
					switch {
					case p.HTTPGet != nil:
						port = p.HTTPGet.Port
						if p.HTTPGet.Host != "" {
							t.Errorf("%s: %s probe goes to host %q", id, what, p.HTTPGet.Host)
						}
					case p.TCPSocket != nil:
						port = p.TCPSocket.Port
					case p.GRPC != nil:
						port = intstr.FromInt32(p.GRPC.Port)
					default:
						continue
					}
					if got := resolvePort(c, port); got != pub {
						t.Errorf("%s: %s probe on port %s (%d), want the public port %d (app channel %d)", id, what, port.String(), got, pub, channel)
					}
				}
				if sp, ok := ann["prometheus.io/port"]; ok && sp != strconv.Itoa(int(pub)) {
					t.Errorf("%s: prometheus.io/port %s, want the public port %d (app channel %d)", id, sp, pub, channel)
				}
				for _, o := range r.all("PodMonitor") {
					pm := o.Obj.(*PodMonitor)
					if !selects(t, &pm.Spec.Selector, w.Template.Labels) {
						continue
					}
					for _, e := range pm.Spec.PodMetricsEndpoints {
						if e.Port == "dapr-metrics" { // the daprd container's, added by the injector
							continue
						}
						if got := containerPort(c, e.Port); got != pub {
							t.Errorf("%s: PodMonitor %s scrapes port %q (%d), want the public port %d", id, pm.Metadata.Name, e.Port, got, pub)
						}
					}
				}
				for _, o := range r.all("Service") {
					s := o.Obj.(*corev1.Service)
					if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, w.Template.Labels) {
						continue
					}
					for _, p := range s.Spec.Ports {
						target := p.TargetPort
						if target.Type == intstr.Int && target.IntVal == 0 {
							target = intstr.FromInt32(p.Port) // unset: the Service's port
						}
						if got := resolvePort(c, target); got != pub {
							t.Errorf("Service %s port %s targets %s (%d) of %s, want its public port %d (app channel %d)", s.Name, p.Name, target.String(), got, id, pub, channel)
						}
					}
				}
			}
			// The Ingress reaches the gateway's public port through its Service.
			for _, o := range r.all("Ingress") {
				in := o.Obj.(*networkingv1.Ingress)
				for _, rule := range in.Spec.Rules {
					if rule.HTTP == nil {
						continue
					}
					for _, path := range rule.HTTP.Paths {
						b := path.Backend.Service
						svc := one[*corev1.Service](t, r, "Service", b.Name)
						for _, p := range svc.Spec.Ports {
							if p.Name != b.Port.Name && (b.Port.Number == 0 || p.Port != b.Port.Number) {
								continue
							}
							w := ws["gateway"]
							if got := resolvePort(appContainer(t, w), p.TargetPort); got != public["gateway"] {
								t.Errorf("Ingress %s: reaches port %d of the gateway, want its public port %d", in.Name, got, public["gateway"])
							}
						}
					}
				}
			}
		})
	}
}

// The gateway's public port listens beyond loopback, where apps/gateway/config.go
// refuses to start without API keys (API_KEYS_FILE) unless ALLOW_ANONYMOUS=true: the
// chart gives it a keys file from a Secret, mounted read-only, or says the API is open.
func TestGatewayAPIKeys(t *testing.T) {
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			w := workloads(t, r)["gateway"]
			c := appContainer(t, w)
			env := envOf(c)
			if ip := net.ParseIP(env["PUBLIC_HOST"].Value); ip == nil || ip.IsLoopback() {
				t.Fatalf("PUBLIC_HOST %q: want a non-loopback address (this test assumes it)", env["PUBLIC_HOST"].Value)
			}
			file, hasFile := env["API_KEYS_FILE"]
			if !hasFile {
				if env["ALLOW_ANONYMOUS"].Value != "true" {
					t.Errorf("the gateway has neither API_KEYS_FILE nor ALLOW_ANONYMOUS=true: it would refuse to start on PUBLIC_HOST %s", env["PUBLIC_HOST"].Value)
				}
				return
			}
			if _, ok := env["ALLOW_ANONYMOUS"]; ok {
				t.Error("both API_KEYS_FILE and ALLOW_ANONYMOUS")
			}
			dir, base := path.Split(file.Value)
			var mount *corev1.VolumeMount
			for i, m := range c.VolumeMounts {
				if path.Clean(m.MountPath) == path.Clean(dir) {
					mount = &c.VolumeMounts[i]
				}
			}
			if mount == nil || !mount.ReadOnly {
				t.Fatalf("API_KEYS_FILE %s is not in a read-only volume mount (%+v)", file.Value, c.VolumeMounts)
			}
			for _, v := range w.Template.Spec.Volumes {
				if v.Name != mount.Name {
					continue
				}
				if v.Secret == nil || v.Secret.SecretName == "" {
					t.Fatalf("volume %s is not a Secret", v.Name)
				}
				var paths []string
				for _, it := range v.Secret.Items {
					paths = append(paths, it.Path)
				}
				if !slices.Contains(paths, base) {
					t.Errorf("Secret volume %s projects %v, not the keys file %s", v.Name, paths, base)
				}
				if m := v.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
					mode := "unset (0644)"
					if m != nil {
						mode = strconv.FormatInt(int64(*m), 8)
					}
					t.Errorf("Secret volume %s mode %s: others must not read the keys", v.Name, mode)
				}
				return
			}
			t.Errorf("no volume %s", mount.Name)
		})
	}
}
