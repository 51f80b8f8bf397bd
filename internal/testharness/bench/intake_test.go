package bench

import (
	"math"
	"testing"
)

func TestIntakeMeasures(t *testing.T) {
	tests := []struct {
		name          string
		before, after intake
		tasks         int
		all, accepted float64
	}{
		{"three a task", intake{}, intake{all: 300, accepted: 100, completed: 100}, 100, 3, 1},
		{"accepted twice", intake{all: 90, accepted: 50}, intake{all: 490, accepted: 250, completed: 100}, 100, 4, 2},
		{"an app restarted: its counters start again", intake{all: 1000, accepted: 500, completed: 500}, intake{all: 20, accepted: 10, completed: 10}, 10, 2, 1},
		{"no tasks", intake{}, intake{all: 3, accepted: 3}, 0, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := intakeMeasures(tt.before, tt.after, tt.tasks)
			got := map[string]float64{}
			for _, m := range ms {
				got[m.Name] = m.Value
			}
			if math.Abs(got[intakeAllName]-tt.all) > 1e-9 || math.Abs(got[intakeAcceptedName]-tt.accepted) > 1e-9 {
				t.Errorf("got all %v, accepted %v; want %v, %v", got[intakeAllName], got[intakeAcceptedName], tt.all, tt.accepted)
			}
		})
	}
}
