package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/domain/catalog"
)

// Metrics of the worker node.
type Metrics struct {
	attempts      *prometheus.CounterVec
	runSeconds    *prometheus.HistogramVec
	waitSeconds   *prometheus.HistogramVec
	requeued      prometheus.Counter
	failedForGood prometheus.Counter
	faults        prometheus.Counter
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// NewMetrics registers the worker's metrics; busy reports running attempts, pool the
// slots this node contributes and held the results it holds not stored yet (Node.HeldResults).
func NewMetrics(reg prometheus.Registerer, pool int, busy func() int, held func() (int, int64)) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_worker_attempts_total", Help: "Attempts finished in this process, by task type and outcome (ok or a failure kind).",
		}, []string{"task", "outcome"}),
		runSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "taskgrid_task_run_seconds", Help: "Time an attempt's task code ran, by task type.", Buckets: latencyBuckets,
		}, []string{"task"}),
		waitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "taskgrid_task_submit_to_start_seconds", Help: "Time from submission to the start of an attempt, by task type.", Buckets: latencyBuckets,
		}, []string{"task"}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskgrid_tasks_requeued_total", Help: "Tasks put back in the queue at high priority after a failed attempt.",
		}),
		faults: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskgrid_worker_faults_injected_total", Help: "Attempts whose worker process was made to die on purpose (WORKER_FAULT_RATE).",
		}),
		failedForGood: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskgrid_tasks_failed_total", Help: "Tasks that failed for good after their last attempt.",
		}),
	}
	// Every type's ok series exists from the start: a counter that appears at its first
	// increment hides that increment from rate() (Prometheus never saw it at zero).
	for _, t := range catalog.Default().Names() {
		m.attempts.WithLabelValues(t, "ok")
	}
	reg.MustRegister(m.attempts, m.runSeconds, m.waitSeconds, m.requeued, m.failedForGood, m.faults,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "taskgrid_worker_busy", Help: "Attempts running in this process."},
			func() float64 { return float64(busy()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "taskgrid_worker_idle", Help: "Worker slots of this process with no attempt running."},
			func() float64 { return float64(pool - busy()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "taskgrid_worker_pool_size", Help: "Worker slots this node adds to the pool."},
			func() float64 { return float64(pool) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "taskgrid_worker_results_held", Help: "Results this node holds computed and not stored yet."},
			func() float64 { n, _ := held(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "taskgrid_worker_results_held_bytes", Help: "Bytes of the results this node holds computed and not stored yet."},
			func() float64 { _, b := held(); return float64(b) }),
	)
	return m
}

func (m *Metrics) started(created, at time.Time, typ string) {
	if !created.IsZero() {
		m.waitSeconds.WithLabelValues(typ).Observe(at.Sub(created).Seconds())
	}
}

func (m *Metrics) finished(typ string, out Outcome) {
	outcome := out.Failure
	if outcome == "" {
		outcome = "ok"
	}
	m.attempts.WithLabelValues(typ, outcome).Inc()
	m.runSeconds.WithLabelValues(typ).Observe(out.Duration.Seconds())
}
