// Command storekeeper writes task results durably to disk; only then are users told a task is complete.
package main

import (
	"os"

	"github.com/taskgrid/taskgrid/internal/platform/appserver"
)

func main() { os.Exit(appserver.Main(Load, run)) }
