package events

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// sampleEvents are events as the apps emit them: every kind of field set or left out.
func sampleEvents() []Event {
	id := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	at := time.Date(2026, 12, 6, 22, 51, 3, 123456789, time.UTC)
	started := at.Add(-time.Second)
	return []Event{
		{ID: task.EventID(id, task.EventAccepted, 0), Version: task.EventVersion, Kind: task.EventAccepted, Time: at, TaskID: id, Type: "noop", Priority: task.PriorityNormal},
		{ID: task.EventID(id, task.EventStarted, 1), Version: task.EventVersion, Kind: task.EventStarted, Time: at, TaskID: id, Type: "primes", Attempt: 1, Priority: task.PriorityHigh, Worker: "worker-0/worker-0-3", StartedAt: &started},
		{ID: task.EventID(id, task.EventProgress, 2), Version: task.EventVersion, Kind: task.EventProgress, Time: at, TaskID: id, Type: "sleep", Attempt: 2, Progress: 0.375, StartedAt: &started},
		{ID: task.EventID(id, task.EventCompleted, 1), Version: task.EventVersion, Kind: task.EventCompleted, Time: at.In(time.FixedZone("x", 3600)), TaskID: id, Type: "compress", Attempt: 1, Worker: "w",
			Result: &task.Location{Directory: "runs/ünïcode", Path: "runs/ünïcode/" + id.String() + ".json", Files: []string{"a.bin", "b.bin"}, Bytes: 1 << 40, SHA256: "ab12"}, StartedAt: &started},
		{ID: task.EventID(id, task.EventCompleted, 3), Version: task.EventVersion, Kind: task.EventCompleted, Time: at, TaskID: id, Type: "noop", Attempt: 3, Result: &task.Location{Directory: "d", Path: "d/x.json"}},
		{ID: task.EventID(id, task.EventFailed, 5), Version: task.EventVersion, Kind: task.EventFailed, Time: at, TaskID: id, Type: "noop", Attempt: 5, Error: "timeout: after 2s"},
	}
}

// The apps' own encoding of an event takes the fast path, and gives what encoding/json
// gives.
func TestDecodeEventFastTakesTheAppsEncoding(t *testing.T) {
	for _, ev := range sampleEvents() {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		fast, ok := decodeEventFast(data)
		if !ok {
			t.Errorf("%s: not taken by the fast path: %s", ev.Kind, data)
			continue
		}
		var want Event
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Errorf("%s: fast %+v\nencoding/json %+v", ev.Kind, fast, want)
		}
	}
}

// What the fast path does not take exactly as encoding/json would, it leaves to it; what
// it takes, it decodes as encoding/json does.
func TestDecodeEventFastLeavesTheRest(t *testing.T) {
	tests := []struct {
		name, data string
		fast       bool
	}{
		{"spaces everywhere", ` { "id" : "a" , "version" : 1 , "kind" : "started" , "attempt" : 2 } `, true},
		{"a key in another case", `{"ID":"a","version":1}`, false},
		{"an unknown key", `{"id":"a","extra":1}`, false},
		{"an escape in a string", `{"id":"a","error":"said \"no\""}`, false},
		{"invalid UTF-8", "{\"id\":\"a\xff\"}", false},
		{"a control character", "{\"id\":\"a\tb\"}", false},
		{"null", `{"id":null}`, false},
		{"a null result", `{"result":null}`, false},
		{"a fraction for an int", `{"attempt":1.5}`, false},
		{"an exponent for an int", `{"attempt":1e2}`, false},
		{"a leading zero", `{"attempt":01}`, false},
		{"an int too large", `{"attempt":99999999999999999999}`, false},
		{"a float with an exponent", `{"progress":2.5e-1}`, true},
		{"a float out of range", `{"progress":1e999}`, false},
		{"a string for a number", `{"attempt":"1"}`, false},
		{"a bad time", `{"time":"yesterday"}`, false},
		{"a bad task id", `{"task_id":"nope"}`, false},
		{"bytes after the object", `{"id":"a"} x`, false},
		{"two objects", `{"id":"a"}{"id":"b"}`, false},
		{"not an object", `["id"]`, false},
		{"truncated", `{"id":"a"`, false},
		{"a trailing comma", `{"id":"a",}`, false},
		{"a repeated key", `{"id":"a","id":"b"}`, true},
		{"a repeated result merges", `{"result":{"path":"p","bytes":1},"result":{"bytes":2}}`, true},
		{"empty files", `{"result":{"files":[]}}`, true},
		{"empty object", `{}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fast, ok := decodeEventFast([]byte(tt.data))
			if ok != tt.fast {
				t.Fatalf("fast path took it: %v, want %v", ok, tt.fast)
			}
			if !ok {
				return
			}
			var want Event
			if err := json.Unmarshal([]byte(tt.data), &want); err != nil {
				t.Fatalf("the fast path took what encoding/json refuses: %v", err)
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("fast %+v\nencoding/json %+v", fast, want)
			}
		})
	}
}

// Whatever the fast path takes, encoding/json takes too and decodes the same.
func FuzzDecodeEventFast(f *testing.F) {
	for _, ev := range sampleEvents() {
		data, _ := json.Marshal(ev)
		f.Add(data)
	}
	f.Add([]byte(`{"result":{"path":"p","bytes":1},"result":{"bytes":2,"files":["a"]}}`))
	f.Add([]byte(` {"progress": -0.5e+3 , "attempt": -0 } `))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeEventFast(data)
		if !ok {
			return
		}
		var want Event
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("the fast path took %q, which encoding/json refuses: %v", data, err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%q: fast %+v\nencoding/json %+v", data, fast, want)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	data, _ := json.Marshal(sampleEvents()[3])
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeEventFast(data); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if err := json.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
