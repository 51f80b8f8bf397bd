// Command analytics aggregates the task lifecycle events from Kafka in micro-batches and stores statistics in MySQL.
package main

import (
	"os"

	"github.com/taskgrid/taskgrid/internal/platform/appserver"
)

func main() { os.Exit(appserver.Main(Load, run)) }
