// Package prometheus holds the tests of taskgrid's Prometheus configuration, rules and
// Grafana dashboard (the files of this directory). It is a module of its own so that the
// PromQL parser (github.com/prometheus/prometheus) stays out of the product's go.mod;
// deploy/scripts/gotest.sh runs its tests in `make test`.
package prometheus
