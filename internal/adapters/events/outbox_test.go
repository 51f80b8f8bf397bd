package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

var errBrokerDown = errors.New("kafka: client has run out of available brokers")

// bulkCall is one PublishEvents call as the fake broker saw it.
type bulkCall struct {
	topic   string
	entries []dapr.PublishEventsEvent
}

// ids are the ids of the events the call carried, in order.
func (c bulkCall) ids() []string {
	var ids []string
	for _, e := range c.entries {
		evs, _ := DecodePack(e.Data)
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

// fakeBroker takes bulk publishes as go-sdk's client reports them: a call that fails
// lists every entry in FailedEvents, a partial failure the refused ones.
type fakeBroker struct {
	mu     sync.Mutex
	down   bool
	refuse map[string]int // event id → how many more times to refuse it
	// answer, if set, replaces the answer of a call that refuses something.
	answer func(refused []any) dapr.PublishEventsResponse
	hold   chan struct{} // if set, the first call waits for it to close
	calls  []bulkCall
	got    []string // ids taken, in order
}

func (b *fakeBroker) PublishEvents(ctx context.Context, pubsub, topic string, events []any, _ ...dapr.PublishEventsOption) dapr.PublishEventsResponse {
	b.mu.Lock()
	hold := b.hold
	first := len(b.calls) == 0
	call := bulkCall{topic: topic}
	for _, e := range events {
		call.entries = append(call.entries, e.(dapr.PublishEventsEvent))
	}
	b.calls = append(b.calls, call)
	b.mu.Unlock()
	if hold != nil && first {
		select {
		case <-hold:
		case <-ctx.Done():
			return dapr.PublishEventsResponse{Error: ctx.Err(), FailedEvents: events}
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return dapr.PublishEventsResponse{Error: fmt.Errorf("error publishing events onto %s topic: %w", topic, errBrokerDown), FailedEvents: events}
	}
	var refused []any
	for _, e := range call.entries {
		evs, bad := DecodePack(e.Data)
		if len(bad) > 0 || len(evs) == 0 || e.Metadata["cloudevent.id"] != packID(evs[0].ID, len(evs)) ||
			e.Metadata["partitionKey"] != evs[0].TaskID.String() || e.ContentType != PackContentType {
			panic(fmt.Sprintf("entry %+v carries %s (%v)", e, e.Data, bad))
		}
		refuse := false
		for _, ev := range evs {
			if b.refuse[ev.ID] > 0 {
				b.refuse[ev.ID]--
				refuse = true
			}
		}
		if refuse {
			refused = append(refused, e)
			continue
		}
		for _, ev := range evs {
			b.got = append(b.got, ev.ID)
		}
	}
	if len(refused) == 0 {
		return dapr.PublishEventsResponse{}
	}
	if b.answer != nil {
		return b.answer(refused)
	}
	return dapr.PublishEventsResponse{Error: errors.New("error publishing events unto " + topic + " topic"), FailedEvents: refused}
}

func (b *fakeBroker) set(down bool) { b.mu.Lock(); b.down = down; b.mu.Unlock() }
func (b *fakeBroker) ids() []string { b.mu.Lock(); defer b.mu.Unlock(); return slices.Clone(b.got) }
func (b *fakeBroker) bulkCalls() []bulkCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// fakeState is a transactional key-value store.
type fakeState struct {
	mu   sync.Mutex
	data map[string][]byte
	down bool
	txs  int // transactions
}

func newFakeState() *fakeState { return &fakeState{data: map[string][]byte{}} }

func (s *fakeState) GetState(_ context.Context, _, key string, _ map[string]string) (*dapr.StateItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, errors.New("redis down")
	}
	return &dapr.StateItem{Key: key, Value: s.data[key]}, nil
}

func (s *fakeState) GetBulkState(_ context.Context, _ string, keys []string, _ map[string]string, _ int32) ([]*dapr.BulkStateItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, errors.New("redis down")
	}
	items := make([]*dapr.BulkStateItem, len(keys))
	for i, k := range keys {
		items[i] = &dapr.BulkStateItem{Key: k, Value: s.data[k]}
	}
	return items, nil
}

func (s *fakeState) ExecuteStateTransaction(_ context.Context, _ string, _ map[string]string, ops []*dapr.StateOperation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("redis down")
	}
	s.txs++
	for _, op := range ops {
		if op.Type == dapr.StateOperationTypeDelete {
			delete(s.data, op.Item.Key)
		} else {
			s.data[op.Item.Key] = op.Item.Value
		}
	}
	return nil
}

func (s *fakeState) transactions() int { s.mu.Lock(); defer s.mu.Unlock(); return s.txs }

// spooled decodes the events in owner's spool, in order.
func (s *fakeState) spooled(t *testing.T, owner string) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var m outboxMeta
	_ = json.Unmarshal(s.data["outbox-"+owner+"-meta"], &m)
	var ids []string
	for seq := m.Head; seq < m.Tail; seq++ {
		e, err := Decode(s.data["outbox-"+owner+"-"+strconv.FormatUint(seq, 10)])
		if err != nil {
			t.Fatalf("spool entry %d: %v", seq, err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

// testEvent is the i-th event of a test, of kind (started when empty).
func testEvent(i int, kind ...string) Event {
	k := KindStarted
	if len(kind) > 0 {
		k = kind[0]
	}
	id := uuid.New()
	return Event{ID: fmt.Sprintf("t:%02d", i), Version: Version, Kind: k, TaskID: id, Type: "noop", Attempt: 1, Time: time.Unix(int64(i), 0)}
}

func testEvents(n int, kinds ...string) []Event {
	evs := make([]Event, n)
	for i := range evs {
		if len(kinds) > 0 {
			evs[i] = testEvent(i, kinds[i%len(kinds)])
		} else {
			evs[i] = testEvent(i)
		}
	}
	return evs
}

func ids(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// only keeps the ids of evs whose kind is kind, in order.
func only(evs []Event, kind string) []string {
	var out []string
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e.ID)
		}
	}
	return out
}

// byKind sorts ids (of events among evs) by the kind of their event, keeping their order.
func byKind(evs []Event, ids []string) map[string][]string {
	kind := map[string]string{}
	for _, e := range evs {
		kind[e.ID] = e.Kind
	}
	out := map[string][]string{}
	for _, id := range ids {
		out[kind[id]] = append(out[kind[id]], id)
	}
	return out
}

func newTestOutbox(pub BulkPublisher, state OutboxState, owner string) *Outbox {
	return NewOutbox(slog.New(slog.NewTextHandler(io.Discard, nil)), pub, state, "pubsub", "statestore", owner)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func drainIn(t *testing.T, o *Outbox) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	go o.Run(ctx)
}

func TestOutboxSpoolsWhileBrokerIsDownAndDrainsInOrder(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{}, newFakeState()
	o := newTestOutbox(broker, state, "worker-node-1")
	ctx := t.Context()
	evs := testEvents(5)

	if err := o.Send(ctx, evs[0]); err != nil { // broker up: straight through
		t.Fatal(err)
	}
	broker.set(true)
	for _, e := range evs[1:4] {
		if err := o.Send(ctx, e); err != nil {
			t.Fatalf("Send while the broker is down = %v, want the event spooled", err)
		}
	}
	if d := o.Depth(); d != 3 {
		t.Fatalf("depth = %d, want 3", d)
	}
	broker.set(false)
	calls := len(broker.bulkCalls())
	if err := o.Send(ctx, evs[4]); err != nil { // behind the spooled ones, not ahead
		t.Fatal(err)
	}
	if got := broker.ids(); !slices.Equal(got, ids(evs[:1])) || len(broker.bulkCalls()) != calls {
		t.Fatalf("published %v before draining, want only %s, and no publish while events wait", got, evs[0].ID)
	}

	// A restarted process (new outbox, same owner) drains what the first one left, in
	// one bulk publish.
	o2 := newTestOutbox(broker, state, "worker-node-1")
	drainIn(t, o2)
	waitFor(t, "the spool drained", func() bool { return slices.Equal(broker.ids(), ids(evs)) })
	waitFor(t, "entries removed", func() bool {
		state.mu.Lock()
		defer state.mu.Unlock()
		return len(state.data) == 1 // only the counters are left
	})
	if d := o2.Depth(); d != 0 {
		t.Fatalf("depth after draining = %d", d)
	}
	if got := broker.bulkCalls(); len(got) != calls+1 || !slices.Equal(got[calls].ids(), ids(evs[1:])) {
		t.Errorf("drain calls %v, want one bulk publish of %v", got[calls:], ids(evs[1:]))
	}
}

// Sends that arrive while a publish is in flight go out together: one bulk publish per
// topic, each entry with its CloudEvent id and partition key.
func TestOutboxBatchesConcurrentSends(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	broker, state := &fakeBroker{hold: hold}, newFakeState()
	o := newTestOutbox(broker, state, "storekeeper-0")
	ctx := t.Context()

	var wg sync.WaitGroup
	first := testEvent(99)
	wg.Go(func() {
		if err := o.Send(ctx, first); err != nil {
			t.Errorf("Send = %v", err)
		}
	})
	waitFor(t, "the first publish in flight", func() bool { return len(broker.bulkCalls()) == 1 })
	evs := testEvents(20, KindStarted, KindCompleted)
	for _, e := range evs[:10] {
		wg.Go(func() {
			if err := o.Send(ctx, e); err != nil {
				t.Errorf("Send = %v", err)
			}
		})
	}
	wg.Go(func() { // several at once count as one request
		if err := o.SendAll(ctx, evs[10:]); err != nil {
			t.Errorf("SendAll = %v", err)
		}
	})
	waitFor(t, "the sends gathered", func() bool { return o.sends.Pending() == 11 })
	close(hold)
	wg.Wait()

	calls := broker.bulkCalls()
	if len(calls) != 2 {
		t.Fatalf("%d bulk publishes, want 2 (the first, then one for every kind: one topic): %v", len(calls), calls)
	}
	if calls[1].topic != TopicEvents {
		t.Errorf("published to %s, want %s", calls[1].topic, TopicEvents)
	}
	got, want := calls[1].ids(), ids(evs)
	slices.Sort(got) // concurrent Sends join in any order
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the batch carried %v, want %v", got, want)
	}
	// SendAll's events keep their order within the batch.
	if !isSubsequence(ids(evs[10:]), inCallOrder(calls, TopicEvents)) {
		t.Errorf("SendAll's events out of order: %v", calls[1].ids())
	}
	// The fake broker checks each entry's pack: its id, key and content type.
	if n := len(calls[1].entries); n != 1 {
		t.Errorf("the batch of %d events went out as %d messages, want one pack", len(evs), n)
	}
	for _, c := range calls {
		seen := map[string]bool{}
		for _, en := range c.entries {
			if seen[en.EntryID] || en.EntryID == "" {
				t.Errorf("entry id %q missing or repeated in one call", en.EntryID)
			}
			seen[en.EntryID] = true
		}
	}
	if o.Depth() != 0 || state.transactions() != 0 {
		t.Errorf("depth %d, %d transactions; want nothing spooled", o.Depth(), state.transactions())
	}
}

func inCallOrder(calls []bulkCall, topic string) []string {
	var out []string
	for _, c := range calls {
		if c.topic == topic {
			out = append(out, c.ids()...)
		}
	}
	return out
}

// isSubsequence reports whether sub appears in s in order.
func isSubsequence(sub, s []string) bool {
	i := 0
	for _, x := range s {
		if i < len(sub) && x == sub[i] {
			i++
		}
	}
	return i == len(sub)
}

// What the broker does not take is spooled, exactly that, in order, in one transaction;
// the rest is published.
func TestOutboxSpoolsWhatTheBrokerRefuses(t *testing.T) {
	t.Parallel()
	evs := testEvents(6, KindStarted, KindStarted, KindProgress)
	tests := []struct {
		name        string
		down        bool
		refuse      []int
		answer      func(refused []any) dapr.PublishEventsResponse
		wantSpooled []string
		pack        int // events per message (0: the default)
		// dupes: the answer hides that the broker took some of what it calls refused,
		// so those are spooled too (published twice: harmless, same ids).
		dupes bool
	}{
		{name: "broker down: all", down: true, wantSpooled: ids(evs)},
		{name: "partial: the listed ones", refuse: []int{1, 2, 4}, pack: 1, wantSpooled: ids([]Event{evs[1], evs[2], evs[4]})},
		{name: "partial: one", refuse: []int{3}, pack: 1, wantSpooled: ids(evs[3:4])},
		{name: "partial, in packs: the whole pack", refuse: []int{3}, pack: 2, wantSpooled: ids(evs[2:4])},
		{name: "partial, one pack: all of it", refuse: []int{3}, wantSpooled: ids(evs)},
		{
			// Every kind goes in one call (one topic): all of it.
			name: "an error that lists no entry: all of the call", refuse: []int{0},
			answer:      func([]any) dapr.PublishEventsResponse { return dapr.PublishEventsResponse{Error: errBrokerDown} },
			wantSpooled: ids(evs), dupes: true,
		},
		{
			// go-sdk lists an entry id it cannot match as a string (and a nil).
			name: "an answer that names an unknown entry: all of the call", refuse: []int{2},
			answer: func([]any) dapr.PublishEventsResponse {
				return dapr.PublishEventsResponse{Error: errBrokerDown, FailedEvents: []any{"7", nil}}
			},
			wantSpooled: ids(evs), dupes: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			broker, state := &fakeBroker{down: tc.down, refuse: map[string]int{}, answer: tc.answer}, newFakeState()
			for _, i := range tc.refuse {
				broker.refuse[evs[i].ID] = 1
			}
			o := newTestOutbox(broker, state, "w")
			if tc.pack > 0 {
				o.packEvents = tc.pack
			}
			if err := o.SendAll(t.Context(), evs); err != nil {
				t.Fatalf("SendAll = %v, want the refused events spooled", err)
			}
			if got := state.spooled(t, "w"); !slices.Equal(got, tc.wantSpooled) {
				t.Errorf("spooled %v, want %v", got, tc.wantSpooled)
			}
			if o.Depth() != len(tc.wantSpooled) || state.transactions() != 1 {
				t.Errorf("depth %d after %d transactions, want %d in one", o.Depth(), state.transactions(), len(tc.wantSpooled))
			}
			published := broker.ids()
			for _, id := range published {
				if slices.Contains(tc.wantSpooled, id) && !tc.dupes {
					t.Errorf("%s both published and spooled", id)
				}
			}
			if len(published)+len(tc.wantSpooled) != len(evs) && !tc.dupes {
				t.Errorf("published %v and spooled %v: %d events, want %d", published, tc.wantSpooled, len(published)+len(tc.wantSpooled), len(evs))
			}

			// Once the broker takes everything, the drain publishes the spool in order.
			broker.set(false)
			drainIn(t, o)
			waitFor(t, "the spool drained", func() bool { return o.Depth() == 0 })
			got, want := byKind(evs, broker.ids()[len(published):]), byKind(evs, tc.wantSpooled)
			for kind := range want {
				if !slices.Equal(got[kind], want[kind]) {
					t.Errorf("drain published %s events %v, want %v", kind, got[kind], want[kind])
				}
			}
			if len(got) != len(want) {
				t.Errorf("drain published kinds %v, want %v", got, want)
			}
		})
	}
}

// A publish that hangs is given up after OutboxTryTimeout: the event is spooled.
func TestOutboxPublishIsBounded(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{hold: make(chan struct{})}, newFakeState() // never released
	o := newTestOutbox(broker, state, "w")
	start := time.Now()
	if err := o.Send(t.Context(), testEvent(0)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < OutboxTryTimeout || took > OutboxTryTimeout+time.Second {
		t.Errorf("Send took %s, want about OutboxTryTimeout (%s)", took, OutboxTryTimeout)
	}
	if o.Depth() != 1 {
		t.Errorf("depth = %d, want the event spooled", o.Depth())
	}
}

// The drain publishes a topic's events in spool order, in bulk, and when the broker
// refuses one it removes only the entries before it: the rest go again.
func TestOutboxDrain(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{down: true, refuse: map[string]int{}}, newFakeState()
	o := newTestOutbox(broker, state, "w")
	evs := testEvents(10, KindStarted, KindCompleted, KindCompleted)
	if err := o.SendAll(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if o.Depth() != len(evs) {
		t.Fatalf("depth = %d, want %d", o.Depth(), len(evs))
	}
	before := len(broker.bulkCalls())
	broker.mu.Lock()
	broker.down = false
	broker.refuse[evs[4].ID] = 1 // refused once
	broker.mu.Unlock()

	drainIn(t, o)
	waitFor(t, "the spool drained", func() bool { return o.Depth() == 0 })

	got := broker.ids()
	if want := ids(evs); !isSubsequence(want, got) {
		t.Errorf("events published as %v, want %v in order", got, want)
	}
	firsts := map[string]bool{}
	for _, id := range got {
		firsts[id] = true
	}
	if len(firsts) != len(evs) {
		t.Errorf("published %d distinct events, want %d", len(firsts), len(evs))
	}
	// Round 1: one call; entries 0-3 removed, 4.. stay. Round 2: the rest.
	if calls := len(broker.bulkCalls()) - before; calls != 2 {
		t.Errorf("drain made %d bulk publishes, want 2 (two rounds of one call)", calls)
	}
	state.mu.Lock()
	left := len(state.data)
	state.mu.Unlock()
	if left != 1 {
		t.Errorf("%d keys left, want only the counters", left)
	}
}

// Owners do not share spools.
func TestOutboxOwnersAreSeparate(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{down: true}, newFakeState()
	a := newTestOutbox(broker, state, "gateway-a")
	b := newTestOutbox(broker, state, "gateway-b")
	if err := a.Send(t.Context(), testEvent(0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(t.Context(), testEvent(1)); err != nil {
		t.Fatal(err)
	}
	if a.Depth() != 1 || b.Depth() != 1 || len(state.data) != 4 {
		t.Fatalf("depths %d, %d and %d keys; want one event and counters each", a.Depth(), b.Depth(), len(state.data))
	}
}

// With both the broker and the state store down, Send says so.
func TestOutboxFailsWhenNothingTakesTheEvent(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{down: true}, newFakeState()
	state.down = true
	o := newTestOutbox(broker, state, "x")
	if err := o.Send(t.Context(), testEvent(0)); err == nil {
		t.Fatal("Send = nil with broker and state store down")
	}
}

// An event of no known kind is refused alone; the others of the call go out.
func TestOutboxSendAllRefusesAnUnknownKind(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{}, newFakeState()
	o := newTestOutbox(broker, state, "x")
	evs := testEvents(3)
	evs[1].Kind = "exploded"
	err := o.SendAll(t.Context(), evs)
	if err == nil || !strings.Contains(err.Error(), evs[1].ID) || o.Depth() != 0 {
		t.Fatalf("SendAll = %v, depth %d; want an error for the unknown kind, nothing spooled", err, o.Depth())
	}
	if got := broker.ids(); !slices.Equal(got, []string{evs[0].ID, evs[2].ID}) {
		t.Errorf("published %v, want the two good events", got)
	}
}

// Events the state machine makes go out with their ids.
func TestOutboxSendsStateMachineEvents(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{}, newFakeState()
	o := newTestOutbox(broker, state, "x")
	rec, accepted := task.Accept(task.Record{ID: uuid.New(), Type: "noop"}, time.Now())
	_, started, err := task.Start(rec, task.Assignment{TaskID: rec.ID, Attempt: 1}, task.Worker{Node: "n", Slot: "s"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sent := append([]Event{accepted}, started...) // the start carries the acceptance again
	if err := o.SendAll(t.Context(), sent); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range sent {
		want = append(want, e.ID)
	}
	got := broker.ids()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
}
