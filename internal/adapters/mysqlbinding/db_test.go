package mysqlbinding

import (
	"encoding/json"
	"testing"
)

func TestInt(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want Int
		ok   bool
	}{{`42`, 42, true}, {`"42"`, 42, true}, {`null`, 0, true}, {`"x"`, 0, false}, {`1.5`, 0, false}} {
		var n Int
		err := json.Unmarshal([]byte(tt.in), &n)
		if (err == nil) != tt.ok || n != tt.want {
			t.Errorf("Int(%s) = %d, %v; want %d, ok=%v", tt.in, n, err, tt.want, tt.ok)
		}
	}
}
