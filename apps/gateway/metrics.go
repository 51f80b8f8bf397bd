package main

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway API's Prometheus metrics.
type Metrics struct {
	submitted  *prometheus.CounterVec
	rejected   *prometheus.CounterVec
	sseClients prometheus.Gauge
	sseEvents  *prometheus.CounterVec
}

// NewMetrics registers the API's metrics in reg. It panics if they are registered twice.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_tasks_submitted_total",
			Help: "Tasks accepted (202), by task type.",
		}, []string{"task"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_tasks_rejected_total",
			Help: "Task submissions refused, by error code.",
		}, []string{"reason"}),
		sseClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskgrid_sse_clients",
			Help: "Open Server-Sent Events streams.",
		}),
		sseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_sse_events_sent_total",
			Help: "Server-Sent Events written, by event name (status, progress, completed, failed).",
		}, []string{"event"}),
	}
	reg.MustRegister(m.submitted, m.rejected, m.sseClients, m.sseEvents)
	return m
}

// init creates the labelled series that are known in advance, so that they read 0
// rather than being absent.
func (m *Metrics) init(taskTypes []string) {
	for _, t := range taskTypes {
		m.submitted.WithLabelValues(t)
	}
	for _, e := range []string{UpdateStatus, UpdateProgress, UpdateCompleted, UpdateFailed} {
		m.sseEvents.WithLabelValues(e)
	}
}

func (m *Metrics) taskSubmitted(taskType string) { m.submitted.WithLabelValues(taskType).Inc() }
func (m *Metrics) taskRejected(code string)      { m.rejected.WithLabelValues(code).Inc() }
func (m *Metrics) sseClientOpened()              { m.sseClients.Inc() }
func (m *Metrics) sseClientClosed()              { m.sseClients.Dec() }
func (m *Metrics) sseEventSent(event string)     { m.sseEvents.WithLabelValues(event).Inc() }
