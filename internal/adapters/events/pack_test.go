package events

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"
)

func TestSplitPacks(t *testing.T) {
	t.Parallel()
	small := outEvent{data: make([]byte, 100)}
	big := outEvent{data: make([]byte, packMaxBytes/2)}
	tests := []struct {
		name      string
		evs       []outEvent
		idx       []int
		maxEvents int
		want      [][]int
	}{
		{"none", nil, nil, 4, nil},
		{"one pack", []outEvent{small, small, small}, []int{0, 1, 2}, 4, [][]int{{0, 1, 2}}},
		{"by count", []outEvent{small, small, small, small, small}, []int{0, 1, 2, 3, 4}, 2, [][]int{{0, 1}, {2, 3}, {4}}},
		{"a subset, in order", []outEvent{small, small, small, small}, []int{3, 1}, 4, [][]int{{3, 1}}},
		{"by size", []outEvent{big, big, small, big}, []int{0, 1, 2, 3}, 100, [][]int{{0}, {1, 2}, {3}}},
		{"an event larger than a pack goes alone", []outEvent{small, {data: make([]byte, packMaxBytes+1)}, small}, []int{0, 1, 2}, 100, [][]int{{0}, {1}, {2}}},
	}
	for _, tt := range tests {
		if got := splitPacks(tt.evs, tt.idx, tt.maxEvents); !slices.EqualFunc(got, tt.want, slices.Equal) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// A pack encodes to lines that DecodePack gives back, in order; what is not an event
// is reported, and the rest still decoded.
func TestPackRoundTrip(t *testing.T) {
	t.Parallel()
	evs := testEvents(5, KindStarted, KindCompleted)
	out := make([]outEvent, len(evs))
	for i, e := range evs {
		oe, err := encode(e)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = oe
	}
	data := encodePack(out, []int{4, 0, 2})
	if n := strings.Count(string(data), "\n"); n != 3 {
		t.Fatalf("pack of 3 has %d lines: %s", n, data)
	}
	got, bad := DecodePack(data)
	if len(bad) != 0 || !slices.Equal(ids(got), ids([]Event{evs[4], evs[0], evs[2]})) {
		t.Fatalf("decoded %v (%v)", ids(got), bad)
	}

	one, _ := json.Marshal(evs[1])
	arr, _ := json.Marshal(evs[2:4])
	tests := []struct {
		name    string
		data    string
		want    []Event
		wantBad int
	}{
		{"an event as an object", string(one), evs[1:2], 0},
		{"an array of events", string(arr), evs[2:4], 0},
		{"lines with one that is not an event", string(one) + "\n{\"id\":\"x\"}\n" + string(arr) + "\n", []Event{evs[1], evs[2], evs[3]}, 1},
		{"an array with a stranger", "[" + string(one) + ",7]", evs[1:2], 1},
		{"cut short: what came before it", string(one) + "\n{\"id\":", evs[1:2], 1},
		{"an event spread over lines", strings.ReplaceAll(string(one), ",", ",\n") + "\n" + string(arr), evs[1:4], 0},
		{"empty", " \n", nil, 1},
		{"not JSON", "nope", nil, 1},
	}
	for _, tt := range tests {
		got, bad := DecodePack([]byte(tt.data))
		if !slices.Equal(ids(got), ids(tt.want)) || len(bad) != tt.wantBad {
			t.Errorf("%s: %v and %d errors (%v), want %v and %d", tt.name, ids(got), len(bad), bad, ids(tt.want), tt.wantBad)
		}
	}
}

func TestPackID(t *testing.T) {
	t.Parallel()
	id := uuid.NewString()
	if packID(id, 1) != id || packID(id, 3) != id+"+2" {
		t.Errorf("packID: %q, %q", packID(id, 1), packID(id, 3))
	}
}

// BenchmarkDecodePack decodes a pack of 100 events as written (one per line), the way
// the subscribers do, and the same pack read as a stream of values.
//
//	go test -run '^$' -bench DecodePack ./internal/adapters/events
func BenchmarkDecodePack(b *testing.B) {
	evs := testEvents(100, KindStarted, KindCompleted)
	out := make([]outEvent, len(evs))
	idx := make([]int, len(evs))
	for i, e := range evs {
		out[i], _ = encode(e)
		idx[i] = i
	}
	data := encodePack(out, idx)
	for _, bc := range []struct {
		name   string
		decode func([]byte) ([]Event, []error)
	}{{"lines", DecodePack}, {"stream", decodeStream}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if got, bad := bc.decode(data); len(got) != len(evs) || len(bad) > 0 {
					b.Fatalf("%d events, %v", len(got), bad)
				}
			}
		})
	}
}

// recordingPublisher keeps the request of each PublishEvent, as go-sdk builds it.
type recordingPublisher struct{ reqs []*pb.PublishEventRequest }

func (p *recordingPublisher) PublishEvent(_ context.Context, pubsub, topic string, data any, opts ...dapr.PublishEventOption) error {
	req := &pb.PublishEventRequest{PubsubName: pubsub, Topic: topic, Data: data.([]byte)}
	for _, o := range opts {
		o(req)
	}
	p.reqs = append(p.reqs, req)
	return nil
}

// Publish sends one event as a pack of one, keyed and identified as the outbox's packs.
func TestPublishPackOfOne(t *testing.T) {
	t.Parallel()
	e := testEvents(1, KindProgress)[0]
	var p recordingPublisher
	if err := Publish(t.Context(), &p, "ps", e); err != nil {
		t.Fatal(err)
	}
	if len(p.reqs) != 1 {
		t.Fatalf("%d publishes, want 1", len(p.reqs))
	}
	req := p.reqs[0]
	got, bad := DecodePack(req.GetData())
	if req.GetTopic() != TopicEvents || req.GetDataContentType() != PackContentType || len(bad) > 0 ||
		!slices.Equal(ids(got), ids([]Event{e})) || !strings.HasSuffix(string(req.GetData()), "\n") ||
		req.GetMetadata()["cloudevent.id"] != e.ID || req.GetMetadata()["partitionKey"] != e.TaskID.String() {
		t.Errorf("published %+v (%v), want the event as a pack of one on %s", req, bad, TopicEvents)
	}
	if err := Publish(t.Context(), &p, "ps", Event{ID: "x", Kind: "nonsense"}); err == nil || len(p.reqs) != 1 {
		t.Errorf("an unknown kind: %v after %d publishes, want an error and nothing published", err, len(p.reqs))
	}
}
