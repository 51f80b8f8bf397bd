// Package procs says how many cores (GOMAXPROCS) each Go process of a stack gets when the
// whole stack shares one machine: `make run`, and the stacks of the tests and the bench.
//
// A Go process may use as many cores as its GOMAXPROCS; when it has less work than
// that, its idle threads spin looking for work before they sleep. One machine runs some
// fourteen Go processes of the stack (four apps, a sidecar each, a second worker node in
// the tests, placement, the scheduler, sentry, the broker), most of which use a fraction
// of a core: on 2 cores, their spinning was a tenth of the CPU a task cost in the burst
// (`go run ./deploy/bench -scenarios burst`, see README). So every process runs on one
// core but those that need more: the gateway's app and sidecar, which every request and
// every event passes through, and the worker apps, whose slots compute in parallel.
//
// On Kubernetes every pod has a CPU limit (the chart's values), from which Go sets each
// process's GOMAXPROCS itself; this package is not used there.
package procs

import "strings"

// Env is the environment variable this package sets.
const Env = "GOMAXPROCS"

// For returns the GOMAXPROCS of a process of app appID ("" for placement, the scheduler,
// sentry and the broker), its sidecar if sidecar is set: "1", or "" for Go's default
// (every core of the machine).
func For(appID string, sidecar bool) string {
	switch {
	case appID == "gateway":
		return ""
	case appID == "worker" && !sidecar:
		return ""
	}
	return "1"
}

// Setting returns the GOMAXPROCS to set for a process of app appID (its sidecar if
// sidecar) that inherits env (KEY=value entries): For's, or ok false when env sets
// GOMAXPROCS already (the user's choice wins, and the process inherits it).
func Setting(env []string, appID string, sidecar bool) (value string, ok bool) {
	if Chosen(env) {
		return "", false
	}
	return For(appID, sidecar), true
}

// Chosen reports whether env (a process environment, KEY=value entries) sets GOMAXPROCS
// already: the user's choice wins over For.
func Chosen(env []string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, Env+"=") {
			return true
		}
	}
	return false
}
