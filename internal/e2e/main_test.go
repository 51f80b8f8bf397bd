// Package e2e holds the end-to-end tests: they run against the real stack (Redis,
// MariaDB, the Kafka-protocol broker, Dapr placement, scheduler and sidecars, and the
// apps), started once for the package by internal/stacktest.
package e2e

import (
	"testing"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

func TestMain(m *testing.M) {
	stacktest.Main(m, stacktest.Options{AppEnv: map[string]map[string]string{"worker": {"POOL_SIZE": "4"}}})
}
