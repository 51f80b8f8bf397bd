// Command gateway is the HTTP front door: it accepts tasks, serves their status and results, and pushes completion to users over Server-Sent Events.
package main

import (
	"os"

	"github.com/taskgrid/taskgrid/internal/platform/appserver"
)

func main() { os.Exit(appserver.Main(Load, run)) }
