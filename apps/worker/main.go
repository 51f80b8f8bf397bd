// Command worker hosts the pool of worker actors that run tasks, one task per actor.
package main

import (
	"os"

	"github.com/taskgrid/taskgrid/internal/platform/appserver"
)

func main() { os.Exit(appserver.Main(Load, run)) }
