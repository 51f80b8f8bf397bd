package main

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the analytics app.
type Metrics struct {
	ingested *prometheus.CounterVec
	dropped  prometheus.Counter
	lag      prometheus.Histogram
	triggers *prometheus.CounterVec
}

// NewMetrics registers the analytics metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_analytics_events_ingested_total", Help: "Lifecycle events written to the ledger (repeats included; the ledger ignores them), by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskgrid_analytics_events_dropped_total", Help: "Delivered entries that were not lifecycle events.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "taskgrid_analytics_event_lag_seconds", Help: "Time from an event to its row in the ledger.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		triggers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_analytics_triggers_total", Help: "Micro-batch triggers, by outcome.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.ingested, m.dropped, m.lag, m.triggers)
	return m
}
