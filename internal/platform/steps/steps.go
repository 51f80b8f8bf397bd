// Package steps stamps the steps of a task's way through the apps, for measuring where
// its time goes (`make bench`'s -steps): when the app was started with STEP_LOG naming
// a file, Mark appends a line "<step> <task id> <unix nanoseconds>" to it, one write per
// line (several processes may share the file); otherwise Mark does nothing.
package steps

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// The steps of a task's way, in order (Order).
const (
	Accepted  = "accepted"  // the gateway accepted the submission (before its pass)
	Pushed    = "pushed"    // the queue's push of the first attempt left the gateway
	Received  = "received"  // the worker node took the push
	Computing = "computing" // a slot began the computation
	Storing   = "storing"   // the node's call of results to the storekeeper left
	Arrived   = "arrived"   // the storekeeper's handler has the result
	Written   = "written"   // the result file is durable
	Recorded  = "recorded"  // the task's record says completed
	Published = "published" // the completion's publish returned
	Fed       = "fed"       // the gateway's feed has the completion
	Notified  = "notified"  // the SSE stream wrote the terminal event
)

// Order is the steps in the order of a task's way.
var Order = []string{Accepted, Pushed, Received, Computing, Storing, Arrived, Written, Recorded, Published, Fed, Notified}

// Env names the file the marks go to.
const Env = "STEP_LOG"

var file atomic.Pointer[os.File]

// Open makes Mark append to path; "" leaves marks off.
func Open(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open the step log %s: %w", path, err)
	}
	if old := file.Swap(f); old != nil {
		old.Close()
	}
	return nil
}

// Mark stamps step of task id now, if marks are on.
func Mark(id uuid.UUID, step string) {
	f := file.Load()
	if f == nil {
		return
	}
	b := make([]byte, 0, 80)
	b = append(b, step...)
	b = append(b, ' ')
	b = append(b, id.String()...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, '\n')
	_, _ = f.Write(b)
}
