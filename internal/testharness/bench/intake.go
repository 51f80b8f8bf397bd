package bench

import (
	"context"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// intake is what the analytics apps have taken in, repeats included (the ledger
// ignores a repeat, but it was published, delivered and read): every lifecycle event,
// the accepted ones, the completions. A task's events are three (accepted, started,
// completed) where none went out twice.
type intake struct{ all, accepted, completed float64 }

// ingestedMetric counts the events an analytics app took in, by kind.
const ingestedMetric = "taskgrid_analytics_events_ingested_total"

// How long the intake at a window's end may take to settle: analytics takes its events
// in bulk deliveries (under load about one every 400 ms), after the tasks' notifications.
// The intake has settled once it holds a completion of every task of the window and has
// not grown for intakeQuiet.
const (
	intakeQuiet  = time.Second
	intakeSettle = 20 * time.Second
)

// scrapeIntake reads what every analytics app of the stack has taken in.
func scrapeIntake(ctx context.Context, st *stacktest.Stack) (intake, error) {
	var in intake
	for _, a := range st.Apps("analytics") {
		m, err := stacktest.ScrapeMetrics(ctx, a.BaseURL())
		if err != nil {
			return intake{}, err
		}
		in.all += m.Sum(ingestedMetric)
		in.accepted += m.Sum(ingestedMetric, `kind="accepted"`)
		in.completed += m.Sum(ingestedMetric, `kind="completed"`)
	}
	return in, nil
}

// settledIntake scrapes the intake until it holds tasks completions more than before and
// stays the same for intakeQuiet, for up to intakeSettle; then it returns the last scrape.
func settledIntake(ctx context.Context, st *stacktest.Stack, before intake, tasks int) (intake, error) {
	last, err := scrapeIntake(ctx, st)
	if err != nil {
		return intake{}, err
	}
	quietSince := time.Now()
	for deadline := time.Now().Add(intakeSettle); time.Now().Before(deadline); {
		complete := growth(before.completed, last.completed) >= float64(tasks)
		if complete && time.Since(quietSince) >= intakeQuiet {
			break
		}
		select {
		case <-ctx.Done():
			return intake{}, ctx.Err()
		case <-time.After(intakeQuiet / 4):
		}
		cur, err := scrapeIntake(ctx, st)
		if err != nil {
			return intake{}, err
		}
		if cur != last {
			last, quietSince = cur, time.Now()
		}
	}
	return last, nil
}

// Figures of the analytics intake.
const (
	intakeAllName      = "analytics: events taken in per task (repeats included)"
	intakeAcceptedName = "analytics: accepted events taken in per task (repeats included)"
)

// intakeMeasures reports the events taken in between two scrapes per task: all, and the
// accepted ones (a task's accepted event goes out twice when both its gateway and its
// first start publish it; see README, "Gateway").
func intakeMeasures(before, after intake, tasks int) []Measure {
	n := float64(max(tasks, 1))
	return []Measure{
		{Name: intakeAllName, Unit: "events", Value: growth(before.all, after.all) / n},
		{Name: intakeAcceptedName, Unit: "events", Value: growth(before.accepted, after.accepted) / n},
	}
}
