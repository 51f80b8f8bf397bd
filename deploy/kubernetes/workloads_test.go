package kubernetes

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/engine"
)

func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %+v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

// Every pod is locked down, sized, probed and covered by a PodDisruptionBudget; every
// Service and the Ingress reach what they should.
func TestPodsHardened(t *testing.T) {
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			ws := workloads(t, r)
			accounts := map[string]bool{}
			for _, o := range r.all("ServiceAccount") {
				accounts[o.Name] = true
			}
			for id, w := range ws {
				spec := w.Template.Spec
				if !selects(t, w.Selector, w.Template.Labels) {
					t.Errorf("%s: the %s's selector does not select its own pods", id, w.Kind)
				}
				psc := spec.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
					psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: pod securityContext %+v: want non-root, a non-zero user, seccomp RuntimeDefault", id, psc)
				}
				if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken || !accounts[spec.ServiceAccountName] {
					t.Errorf("%s: service account %q (rendered: %v), token mounted: %v", id, spec.ServiceAccountName, accounts[spec.ServiceAccountName], spec.AutomountServiceAccountToken)
				}
				if spec.TerminationGracePeriodSeconds == nil {
					t.Errorf("%s: no terminationGracePeriodSeconds", id)
				}
				c := appContainer(t, w)
				sc := c.SecurityContext
				if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
					sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
					sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s: container securityContext %+v: want non-root, read-only root, no privilege escalation, all capabilities dropped", id, sc)
				}
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					req, okReq := c.Resources.Requests[res]
					lim, okLim := c.Resources.Limits[res]
					if !okReq || !okLim || req.IsZero() || req.Cmp(lim) > 0 {
						t.Errorf("%s: %s request %v limit %v: want both, request ≤ limit", id, res, req.String(), lim.String())
					}
				}
				port := containerPort(c, "http")
				for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
					want := map[string]string{"liveness": "/healthz", "readiness": "/readyz", "startup": "/healthz"}[what]
					if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "http" || port == 0 {
						t.Errorf("%s: %s probe %+v: want GET %s on the app's port", id, what, p, want)
					}
				}
				// The gateway reports unhealthy for 5 s on purpose (actorhost.SelfCheck):
				// the kubelet must not restart it for that.
				if lp := c.LivenessProbe; lp != nil && lp.PeriodSeconds*lp.FailureThreshold < 20 {
					t.Errorf("%s: liveness gives up after %d s; the gateway's self-check answers 503 for 5 s", id, lp.PeriodSeconds*lp.FailureThreshold)
				}
				// PodDisruptionBudget.
				var pdbs int
				for _, o := range r.all("PodDisruptionBudget") {
					p := o.Obj.(*policyv1.PodDisruptionBudget)
					if selects(t, p.Spec.Selector, w.Template.Labels) {
						pdbs++
						if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
							t.Errorf("%s: PDB %s sets neither maxUnavailable nor minAvailable", id, p.Name)
						}
					}
				}
				if pdbs != 1 {
					t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", id, pdbs)
				}
			}
			// Services select pods of one app and name a port the pods have.
			for _, o := range r.all("Service") {
				s := o.Obj.(*corev1.Service)
				var hit []string
				for id, w := range ws {
					if selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, w.Template.Labels) {
						hit = append(hit, id)
						for _, p := range s.Spec.Ports {
							if containerPort(appContainer(t, w), p.TargetPort.String()) == 0 {
								t.Errorf("Service %s: targetPort %s is not a port of %s", s.Name, p.TargetPort.String(), id)
							}
						}
					}
				}
				if len(hit) != 1 {
					t.Errorf("Service %s selects the pods of %v, want one app", s.Name, hit)
				}
			}
			// StatefulSets are governed by a headless Service.
			for _, o := range r.all("StatefulSet") {
				s := o.Obj.(*appsv1.StatefulSet)
				svc := one[*corev1.Service](t, r, "Service", s.Spec.ServiceName)
				if svc.Spec.ClusterIP != corev1.ClusterIPNone {
					t.Errorf("StatefulSet %s: its Service %s is not headless", s.Name, svc.Name)
				}
			}
			checkIngress(t, r)
			checkStorekeeper(t, r, ws["storekeeper"])
		})
	}
}

func checkIngress(t *testing.T, r release) {
	t.Helper()
	for _, o := range r.all("Ingress") {
		in := o.Obj.(*networkingv1.Ingress)
		ann := in.Annotations
		if ann["nginx.ingress.kubernetes.io/proxy-buffering"] != "off" {
			t.Errorf("Ingress %s: proxy-buffering %q, want off (SSE)", in.Name, ann["nginx.ingress.kubernetes.io/proxy-buffering"])
		}
		// Far above the gateway's 15 s heartbeat, so that no idle stream is cut.
		for _, k := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
			if n, err := strconv.Atoi(ann["nginx.ingress.kubernetes.io/"+k]); err != nil || n < 300 {
				t.Errorf("Ingress %s: %s %q, want at least 300 s (SSE streams)", in.Name, k, ann["nginx.ingress.kubernetes.io/"+k])
			}
		}
		// Submissions may be up to 16 MiB (apps/gateway MaxBodyBytesDefault).
		if n := nginxSize(ann["nginx.ingress.kubernetes.io/proxy-body-size"]); n < 16<<20 {
			t.Errorf("Ingress %s: proxy-body-size %q below the API's 16 MiB", in.Name, ann["nginx.ingress.kubernetes.io/proxy-body-size"])
		}
		for _, rule := range in.Spec.Rules {
			if rule.HTTP == nil {
				t.Errorf("Ingress %s: a rule without paths", in.Name)
				continue
			}
			for _, p := range rule.HTTP.Paths {
				svc := one[*corev1.Service](t, r, "Service", p.Backend.Service.Name)
				found := false
				for _, sp := range svc.Spec.Ports {
					found = found || sp.Name == p.Backend.Service.Port.Name
				}
				if !found || svc.Spec.Selector["app.kubernetes.io/component"] != "gateway" {
					t.Errorf("Ingress %s: backend %+v is not the gateway's Service port", in.Name, p.Backend.Service)
				}
			}
		}
	}
}

// nginxSize reads an nginx size ("17m", "1024k", "16777216").
func nginxSize(s string) int64 {
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToLower(s), "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n * mult
}

func checkStorekeeper(t *testing.T, r release, w workload) {
	t.Helper()
	c := appContainer(t, w)
	root := envOf(c)["RESULTS_ROOT"].Value
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == root {
			mount = &c.VolumeMounts[i]
		}
	}
	if root == "" || mount == nil || mount.ReadOnly {
		t.Fatalf("storekeeper: RESULTS_ROOT %q is not a writable volume mount (%+v)", root, c.VolumeMounts)
	}
	for _, v := range w.Template.Spec.Volumes {
		if v.Name != mount.Name {
			continue
		}
		if v.PersistentVolumeClaim == nil {
			t.Fatalf("storekeeper: the results volume is not a PersistentVolumeClaim")
		}
		pvc := one[*corev1.PersistentVolumeClaim](t, r, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName)
		if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
			t.Errorf("storekeeper: the PVC requests no storage")
		}
		if w.Replicas != nil && *w.Replicas > 1 && !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
			t.Errorf("storekeeper: %d replicas share a %v volume", *w.Replicas, pvc.Spec.AccessModes)
		}
		return
	}
	t.Errorf("storekeeper: no volume %s", mount.Name)
}

// Each app container sets only environment variables its app reads (a misspelt name
// would be ignored), and every variable the app requires.
func TestEnvMatchesAppConfig(t *testing.T) {
	common := []string{"internal/platform/appserver", "internal/adapters/sidecar"}
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			for id, w := range workloads(t, r) {
				dirs := append([]string{mainDir(id)}, common...)
				if id != "analytics" { // the apps that write task records read TASK_RETENTION there
					dirs = append(dirs, "internal/adapters/taskstore")
				}
				read, required := envRead(t, dirs...)
				env := envOf(appContainer(t, w))
				for n := range env {
					if !read[n] {
						t.Errorf("%s: env %s is not read by the app (it reads %v)", id, n, slices.Sorted(mapsKeys(read)))
					}
				}
				for n := range required {
					if _, ok := env[n]; !ok {
						t.Errorf("%s: the app requires %s", id, n)
					}
				}
			}
		})
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// The apps' optional settings reach them only when the values set them (their
// defaults otherwise): TASK_RETENTION for the apps that write task records (and not
// analytics, which reads no such setting), the gateway's SUBMIT_SPACING and ACCEPTED_EVENTS_DELAY, the
// worker's HELD_RESULTS_MAX and HELD_RESULTS_MAX_BYTES, the latter as integers (a YAML
// number is a float to Helm: 268435456 must not become 2.68435456e+08, which the worker
// refuses).
func TestOptionalEnv(t *testing.T) {
	settings := []struct{ app, key, marker, want string }{
		{"gateway", "SUBMIT_SPACING", "submit-spacing", "4ms"},
		{"gateway", "ACCEPTED_EVENTS_DELAY", "accepted-delay", "20ms"},
		{"worker", "HELD_RESULTS_MAX", "held-results", "64"},
		{"worker", "HELD_RESULTS_MAX_BYTES", "held-results", "268435456"},
		{"gateway", "TASK_RETENTION", "retention", "2h"},
		{"worker", "TASK_RETENTION", "retention", "2h"},
		{"storekeeper", "TASK_RETENTION", "retention", "2h"},
	}
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			for _, s := range settings {
				env := envOf(appContainer(t, workloads(t, r)[s.app]))
				setOnlyWhere(t, name, env, s.key, s.marker, s.want)
			}
		})
	}
}

// setOnlyWhere checks that env sets key, to want, in the variants whose name has marker
// (their values set it), and nowhere else (the app's default holds there).
func setOnlyWhere(t *testing.T, name string, env map[string]corev1.EnvVar, key, marker, want string) {
	t.Helper()
	if v, ok := env[key]; strings.Contains(name, marker) != ok || ok && v.Value != want {
		t.Errorf("%s %q (set: %v), want %s where the values set it and nothing elsewhere", key, v.Value, ok, want)
	}
}

// validNode is internal/domain/task.ValidNode.
var validNode = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// Worker nodes: a stable NODE_ID from the pod name, the pool size, and a drain that
// fits in the pod's shutdown.
func TestWorkerNodes(t *testing.T) {
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			w := workloads(t, r)["worker"]
			if w.Kind != "StatefulSet" {
				t.Fatalf("worker is a %s, want a StatefulSet (stable NODE_ID)", w.Kind)
			}
			sts := one[*appsv1.StatefulSet](t, r, "StatefulSet", w.Name)
			if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
				t.Errorf("podManagementPolicy %q, want Parallel", sts.Spec.PodManagementPolicy)
			}
			env := envOf(appContainer(t, w))
			id := env["NODE_ID"]
			if id.ValueFrom == nil || id.ValueFrom.FieldRef == nil || id.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("NODE_ID %+v, want the pod's name (fieldRef metadata.name)", id)
			}
			if pod := fmt.Sprintf("%s-%d", sts.Name, 999); !validNode.MatchString(pod) || len(pod) > 63 {
				t.Errorf("pod name %s is not a valid NODE_ID and DNS label", pod)
			}
			if n, err := strconv.Atoi(env["POOL_SIZE"].Value); err != nil || n < 1 {
				t.Errorf("POOL_SIZE %q", env["POOL_SIZE"].Value)
			}
			// SYNC_GAP and STORE_SPACING only when the values set them (the worker's
			// defaults otherwise).
			setOnlyWhere(t, name, env, "SYNC_GAP", "sync-gap", "20ms")
			setOnlyWhere(t, name, env, "STORE_SPACING", "store-spacing", "50ms")
			drain, err := time.ParseDuration(env["DRAIN_TIMEOUT"].Value)
			if err != nil || drain <= 0 {
				t.Fatalf("DRAIN_TIMEOUT %q: %v", env["DRAIN_TIMEOUT"].Value, err)
			}
			ann := w.Template.Annotations
			block, err := time.ParseDuration(ann["dapr.io/block-shutdown-duration"])
			if err != nil {
				t.Fatal(err)
			}
			graceful := time.Duration(atoi(t, "graceful-shutdown-seconds", ann["dapr.io/graceful-shutdown-seconds"])) * time.Second
			grace := time.Duration(*w.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			// After the drain: a last sync (bounded by the lease TTL, 2 s), the HTTP
			// server's stop; the sidecar must stay up through all of it.
			if block < drain+5*time.Second {
				t.Errorf("the sidecar blocks its shutdown %v, the drain takes up to %v: it must outlast the drain", block, drain)
			}
			if grace < block+graceful+5*time.Second {
				t.Errorf("grace period %v < sidecar block %v + its graceful shutdown %v + margin", grace, block, graceful)
			}
		})
	}
}

// Autoscaling: KEDA scales the worker StatefulSet on the queue's metrics, which the
// gateway exports.
func TestWorkerAutoscaling(t *testing.T) {
	r := defaultRelease(t)
	w := workloads(t, r)["worker"]
	so := one[*ScaledObject](t, r, "ScaledObject", w.Name)
	ref := so.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "StatefulSet" || ref.Name != w.Name {
		t.Errorf("scaleTargetRef %+v, want the worker StatefulSet %s", ref, w.Name)
	}
	if w.Replicas != nil {
		t.Errorf("the StatefulSet sets replicas %d while KEDA owns the count", *w.Replicas)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 || so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
		t.Errorf("min %v max %v replicas", so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "prometheus" {
		t.Fatalf("triggers %+v, want one prometheus trigger", so.Spec.Triggers)
	}
	md := so.Spec.Triggers[0].Metadata
	if u, err := url.Parse(md["serverAddress"]); err != nil || u.Scheme == "" || u.Host == "" {
		t.Errorf("serverAddress %q", md["serverAddress"])
	}
	pool := envOf(appContainer(t, w))["POOL_SIZE"].Value
	if md["threshold"] != pool {
		t.Errorf("threshold %q, want the pool size %q (demand per pod)", md["threshold"], pool)
	}
	// The query reads metrics the gateway's queue actor and the workers really export.
	declared := metricNames(t, "internal/adapters/queueactor", "apps/worker")
	used := regexp.MustCompile(`taskgrid_[a-z_]+`).FindAllString(md["query"], -1)
	if !slices.Contains(used, "taskgrid_queue_depth") {
		t.Errorf("query %q does not read taskgrid_queue_depth", md["query"])
	}
	for _, m := range used {
		if !declared[m] {
			t.Errorf("query reads %s, which neither the queue actor nor the worker exports (they have %v)", m, slices.Sorted(mapsKeys(declared)))
		}
	}
	// Scale-in one pod at a time, after a quiet period: each stopping pod drains.
	hpa := so.Spec.Advanced.HorizontalPodAutoscalerConfig
	if hpa == nil || hpa.Behavior == nil || hpa.Behavior.ScaleDown == nil || len(hpa.Behavior.ScaleDown.Policies) == 0 ||
		hpa.Behavior.ScaleDown.Policies[0].Value != 1 || hpa.Behavior.ScaleDown.StabilizationWindowSeconds == nil || *hpa.Behavior.ScaleDown.StabilizationWindowSeconds < 60 {
		t.Errorf("scale-down behaviour %+v: want one pod at a time after at least a minute", hpa)
	}

	off := render(t, nil, map[string]any{"worker": map[string]any{"autoscaling": map[string]any{"enabled": false}, "replicas": 3}})
	if len(off.all("ScaledObject")) != 0 {
		t.Error("a ScaledObject with autoscaling off")
	}
	if w := workloads(t, off)["worker"]; w.Replicas == nil || *w.Replicas != 3 {
		t.Errorf("autoscaling off: replicas %v, want 3", w.Replicas)
	}
}

// Kafka: a Strimzi cluster and a KafkaTopic for each topic the code uses, reached by
// the pub/sub components at its plain listener.
func TestKafka(t *testing.T) {
	topics := codeTopics(t)
	envTopics := strings.Split(localEnv(t)["TASKGRID_KAFKA_TOPICS"], ",")
	slices.Sort(envTopics)
	if !slices.Equal(envTopics, topics) {
		t.Fatalf("deploy/local.env creates topics %v, the code uses %v", envTopics, topics)
	}
	// The local broker's default partitions (deploy/kafka) are the chart's default.
	m := regexp.MustCompile(`"KAFKA_PARTITIONS",\s*"(\d+)"`).FindSubmatch(readFile(t, "deploy/kafka/main.go"))
	if m == nil {
		t.Fatal("deploy/kafka/main.go: no KAFKA_PARTITIONS default")
	}
	localPartitions := atoi(t, "KAFKA_PARTITIONS", string(m[1]))

	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			brokers := ""
			for _, o := range r.all("Component") {
				c := o.Obj.(*Component)
				for _, md := range c.Spec.Metadata {
					if md.Name == "brokers" && md.Value != nil {
						brokers = *md.Value
					}
					if md.Name == "disableTls" && (md.Value == nil || *md.Value != "true") {
						t.Errorf("%s: disableTls must stay true for the plain listener", c.Metadata.Name)
					}
				}
			}
			ks := r.all("Kafka")
			if len(ks) == 0 {
				if len(r.all("KafkaTopic")) != 0 || len(r.all("KafkaNodePool")) != 0 {
					t.Error("Strimzi objects without a Kafka cluster")
				}
				if brokers == "" || strings.Contains(brokers, "kafka-bootstrap") {
					t.Errorf("an existing cluster: brokers %q", brokers)
				}
				return
			}
			if len(ks) != 1 {
				t.Fatalf("%d Kafka clusters", len(ks))
			}
			k := ks[0].Obj.(*Kafka)
			var plain int32
			for _, l := range k.Spec.Kafka.Listeners {
				if l.Type == "internal" && !l.TLS {
					plain = l.Port
				}
			}
			if want := fmt.Sprintf("%s-kafka-bootstrap.%s.svc:%d", k.Metadata.Name, namespace, plain); plain == 0 || brokers != want {
				t.Errorf("brokers %q, want the cluster's plain listener %q", brokers, want)
			}
			if k.APIVersion == "kafka.strimzi.io/v1beta2" && k.Metadata.Annotations["strimzi.io/kraft"] != "enabled" {
				t.Error("kafka.strimzi.io/v1beta2 without strimzi.io/kraft: enabled")
			}
			if k.Spec.EntityOperator == nil || k.Spec.EntityOperator.TopicOperator == nil {
				t.Error("no topic operator: the KafkaTopics would not be made")
			}
			pools := r.all("KafkaNodePool")
			if len(pools) != 1 {
				t.Fatalf("%d node pools", len(pools))
			}
			pool := pools[0].Obj.(*KafkaNodePool)
			if pool.Metadata.Labels["strimzi.io/cluster"] != k.Metadata.Name || !slices.Contains(pool.Spec.Roles, "broker") || !slices.Contains(pool.Spec.Roles, "controller") {
				t.Errorf("node pool %s: cluster %q roles %v", pool.Metadata.Name, pool.Metadata.Labels["strimzi.io/cluster"], pool.Spec.Roles)
			}
			minISR := toInt(k.Spec.Kafka.Config["min.insync.replicas"])
			var got []string
			for _, o := range r.all("KafkaTopic") {
				kt := o.Obj.(*KafkaTopic)
				n := cmpOr(kt.Spec.TopicName, kt.Metadata.Name)
				got = append(got, n)
				if kt.Metadata.Labels["strimzi.io/cluster"] != k.Metadata.Name {
					t.Errorf("topic %s: cluster label %q, want %q", n, kt.Metadata.Labels["strimzi.io/cluster"], k.Metadata.Name)
				}
				if kt.Spec.Replicas > pool.Spec.Replicas || int(kt.Spec.Replicas) < minISR || kt.Spec.Partitions < 1 {
					t.Errorf("topic %s: %d replicas on %d brokers, min.insync.replicas %d, %d partitions", n, kt.Spec.Replicas, pool.Spec.Replicas, minISR, kt.Spec.Partitions)
				}
				if name == "defaults" && int(kt.Spec.Partitions) != localPartitions {
					t.Errorf("topic %s: %d partitions by default, the local broker has %d", n, kt.Spec.Partitions, localPartitions)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, topics) {
				t.Errorf("KafkaTopics %v, the code uses %v", got, topics)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func toInt(v any) int {
	switch v := v.(type) {
	case float64:
		return int(v)
	case int64:
		return int(v)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return -1
}

// Prometheus: annotations by default, PodMonitors when asked for.
func TestPrometheusScrape(t *testing.T) {
	for name, r := range variants(t) {
		t.Run(name, func(t *testing.T) {
			monitors := r.all("PodMonitor")
			for id, w := range workloads(t, r) {
				ann := w.Template.Annotations
				// The public listener serves /metrics (the app channel does not).
				port := strconv.Itoa(int(containerPort(appContainer(t, w), "http")))
				if len(monitors) == 0 {
					if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
						t.Errorf("%s: prometheus.io annotations scrape=%q port=%q path=%q, want true, %s, /metrics", id,
							ann["prometheus.io/scrape"], ann["prometheus.io/port"], ann["prometheus.io/path"], port)
					}
					continue
				}
				if _, ok := ann["prometheus.io/scrape"]; ok {
					t.Errorf("%s: scrape annotations beside PodMonitors: scraped twice", id)
				}
				var hits int
				for _, o := range monitors {
					pm := o.Obj.(*PodMonitor)
					if !selects(t, &pm.Spec.Selector, w.Template.Labels) {
						continue
					}
					hits++
					var eps []string
					for _, e := range pm.Spec.PodMetricsEndpoints {
						eps = append(eps, e.Port+" "+e.Path)
					}
					slices.Sort(eps)
					if want := []string{"dapr-metrics /", "http /metrics"}; !slices.Equal(eps, want) {
						t.Errorf("%s: PodMonitor %s scrapes %v, want %v", id, pm.Metadata.Name, eps, want)
					}
				}
				if hits != 1 {
					t.Errorf("%s: %d PodMonitors select it", id, hits)
				}
			}
		})
	}
}

// Values that cannot work are refused at render time, with a message that says why.
func TestRefusedValues(t *testing.T) {
	cases := map[string]struct {
		overrides map[string]any
		want      string
	}{
		"shared results on a single-node volume":   {map[string]any{"storekeeper": map[string]any{"replicas": 2}}, "ReadWriteMany"},
		"no time after the drain":                  {map[string]any{"worker": map[string]any{"terminationMarginSeconds": 5}}, "terminationMarginSeconds"},
		"acks from more replicas than a topic has": {map[string]any{"kafka": map[string]any{"minInsyncReplicas": 3, "topics": map[string]any{"replicas": 2}}}, "minInsyncReplicas"},
		"topic replicas beyond the brokers":        {map[string]any{"kafka": map[string]any{"replicas": 1}}, "kafka.topics.replicas"},
		"an existing cluster without its address":  {map[string]any{"kafka": map[string]any{"create": false}}, "bootstrapServers"},
		"no image registry":                        {map[string]any{"image": map[string]any{"registry": ""}}, "image.registry"},
		"an open API without saying so":            {map[string]any{"gateway": map[string]any{"apiKeys": map[string]any{"secretName": ""}}}, "allowAnonymous"},
		"one Secret for both tokens":               {map[string]any{"dapr": map[string]any{"apiTokenSecret": "tokens", "appTokenSecret": "tokens"}}, "same Secret"},
		"chart-made and given Secret clash":        {map[string]any{"dapr": map[string]any{"appTokenSecret": "taskgrid-dapr-api-token"}}, "same Secret"},
		"no control plane trust domain":            {map[string]any{"dapr": map[string]any{"controlPlaneTrustDomain": ""}}, "controlPlaneTrustDomain"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := renderErr(t, nil, c.overrides)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("render error %v, want one that mentions %q", err, c.want)
			}
		})
	}
	// The same overrides made consistent render.
	render(t, nil, map[string]any{"storekeeper": map[string]any{"replicas": 2, "persistence": map[string]any{"accessMode": "ReadWriteMany"}}})
}

// Against a cluster, the chart refuses a Dapr control plane with mTLS off (the access
// control list needs SPIFFE identities). lookup is served by a fake client here.
func TestRefusesControlPlaneWithoutMTLS(t *testing.T) {
	c := loadChart(t)
	vals, err := util.ToRenderValues(c, map[string]any{},
		common.ReleaseOptions{Name: releaseName, Namespace: namespace, IsInstall: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		sys     map[string]any // the daprsystem Configuration; nil: none
		refused bool
	}{
		"mtls off":      {map[string]any{"mtls": map[string]any{"enabled": false}}, true},
		"mtls on":       {map[string]any{"mtls": map[string]any{"enabled": true}}, false},
		"mtls unset":    {map[string]any{}, false}, // Dapr's default is on
		"no daprsystem": {nil, false},
	} {
		t.Run(name, func(t *testing.T) {
			calls := []string{}
			p := fakeProvider{calls: &calls, objs: map[string]*unstructured.Unstructured{}}
			if tc.sys != nil {
				p.objs[daprSystemKey] = &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration",
					"metadata": map[string]any{"name": "daprsystem", "namespace": "dapr-system"},
					"spec":     tc.sys,
				}}
			}
			_, err := engine.RenderWithClientProvider(c, vals, p)
			if refused := err != nil && strings.Contains(err.Error(), "mTLS off"); refused != tc.refused {
				t.Errorf("render error %v, want refused=%v", err, tc.refused)
			}
			if !slices.Contains(calls, daprSystemKey) {
				t.Errorf("the chart did not look up daprsystem (it looked up %v)", calls)
			}
		})
	}
}

// fakeProvider answers Helm's lookup from objs, keyed "<apiVersion>/<kind> <namespace>/<name>"
// (anything else is not found), and records every lookup in calls. Only Namespace and
// Get are used by Helm's lookup.
type fakeProvider struct {
	objs  map[string]*unstructured.Unstructured
	calls *[]string
}

const daprSystemKey = "dapr.io/v1alpha1/Configuration dapr-system/daprsystem"

func (p fakeProvider) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	return &fakeResource{p: p, gvk: apiVersion + "/" + kind}, true, nil
}

type fakeResource struct {
	dynamic.NamespaceableResourceInterface
	p   fakeProvider
	gvk string
	ns  string
}

func (r *fakeResource) Namespace(ns string) dynamic.ResourceInterface {
	return &fakeResource{p: r.p, gvk: r.gvk, ns: ns}
}

func (r *fakeResource) Get(_ context.Context, name string, _ metav1.GetOptions, _ ...string) (*unstructured.Unstructured, error) {
	key := r.gvk + " " + r.ns + "/" + name
	if r.p.calls != nil {
		*r.p.calls = append(*r.p.calls, key)
	}
	obj, ok := r.p.objs[key]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: r.gvk}, name)
	}
	return obj.DeepCopy(), nil
}

// The Dockerfile builds each app's main package, statically, as the chart's user, and
// copies every directory the apps compile from.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	goVersion := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\d+)\.(\d+)`).FindStringSubmatch(df)
	modGo := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(readFile(t, "go.mod"))
	if goVersion == nil || modGo == nil {
		t.Fatal("no GO_VERSION in the Dockerfile or no go directive in go.mod")
	}
	if goVersion[1] != string(modGo[1]) || goVersion[2] != string(modGo[2]) {
		t.Errorf("Dockerfile builds with Go %s.%s, go.mod says %s.%s", goVersion[1], goVersion[2], modGo[1], modGo[2])
	}
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 || !regexp.MustCompile(`^gcr\.io/distroless/static[-a-z0-9]*:nonroot$`).MatchString(froms[len(froms)-1][1]) {
		t.Errorf("final stage %v, want distroless static nonroot", froms)
	}
	if !strings.Contains(df, "CGO_ENABLED=0") {
		t.Error("the build is not static (CGO_ENABLED=0)")
	}
	vals, err := common.ReadValuesFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	uid := fmt.Sprint(vals.AsMap()["pod"].(map[string]any)["runAsUser"])
	if !regexp.MustCompile(`(?m)^USER ` + uid + `(:\d+)?$`).MatchString(df) {
		t.Errorf("the image's USER is not the chart's runAsUser %s", uid)
	}
	// Each app's case arm builds its main package.
	for _, app := range apps {
		arm := regexp.MustCompile(`(?m)^\s*([a-z|]*\b` + app + `\b[a-z|]*)\) pkg="([^"]+)"`).FindStringSubmatch(df)
		if arm == nil {
			t.Errorf("the Dockerfile does not build APP=%s", app)
			continue
		}
		pkg := strings.ReplaceAll(arm[2], "${APP}", app)
		if filepath.Clean(pkg) != filepath.Clean(mainDir(app)) {
			t.Errorf("APP=%s builds %s, its main package is %s", app, pkg, mainDir(app))
		}
		isMain := false
		for _, f := range parseDir(t, mainDir(app), 0) {
			isMain = isMain || f.Name.Name == "main"
		}
		if !isMain {
			t.Errorf("%s is not a main package", mainDir(app))
		}
	}
	// COPY brings in every directory the apps import from this module, and the
	// .dockerignore lets them through.
	var copied []string
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S+)/ `).FindAllStringSubmatch(df, -1) {
		copied = append(copied, m[1])
	}
	ignore, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append([]string{"go.mod", "go.sum"}, copied...) {
		if !regexp.MustCompile(`(?m)^!` + regexp.QuoteMeta(c) + `/?$`).Match(ignore) {
			t.Errorf("Dockerfile.dockerignore does not let %s through", c)
		}
	}
	for _, app := range apps {
		for _, d := range moduleImports(t, mainDir(app)) {
			top := strings.SplitN(d, "/", 2)[0]
			if !slices.Contains(copied, top) {
				t.Errorf("%s compiles %s, which the Dockerfile does not copy (it copies %v)", app, d, copied)
			}
		}
	}
}
