package catalog

import "context"

// progressStep is the smallest advance reported, which bounds a run to about 100 reports.
const progressStep = 0.01

// progressReporter turns raw fractions into what Job.Run promises: monotonic values
// in [0,1], at most about 1/progressStep calls, and a final 1.0. A nil func is allowed.
type progressReporter struct {
	report ProgressFunc
	last   float64
	done   bool
}

func newProgress(f ProgressFunc) *progressReporter { return &progressReporter{report: f} }

// set reports fraction x if it advances enough since the last report.
func (p *progressReporter) set(x float64) {
	if p.report == nil || p.done {
		return
	}
	x = min(max(x, 0), 1)
	if x == 1 {
		p.finish()
		return
	}
	if x-p.last < progressStep {
		return
	}
	p.last = x
	p.report(x)
}

// finish reports 1.0, once.
func (p *progressReporter) finish() {
	if p.report == nil || p.done {
		return
	}
	p.done = true
	p.last = 1
	p.report(1)
}

// ctxWriter appends to a buffer and fails once ctx is done, so that an encoder that
// writes as it goes (png, jpeg, gif, the compressors) stops promptly when cancelled.
type ctxWriter struct {
	ctx context.Context
	buf []byte
}

func (w *ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}
