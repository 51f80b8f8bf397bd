package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/taskgrid/taskgrid/internal/platform/batch"
)

// Sender sends lifecycle events (Outbox does).
type Sender interface {
	Send(ctx context.Context, e Event) error
}

// BatchSender also sends several events at once (Outbox does).
type BatchSender interface {
	Sender
	SendAll(ctx context.Context, evs []Event) error
}

// BulkPublisher is the part of the Dapr client the outbox publishes with (Dapr's bulk
// publish; pubsub.kafka implements it natively, in one producer call).
type BulkPublisher interface {
	PublishEvents(ctx context.Context, pubsubName, topicName string, events []interface{}, opts ...dapr.PublishEventsOption) dapr.PublishEventsResponse
}

// OutboxState is the part of the Dapr client the outbox keeps its events with.
type OutboxState interface {
	GetState(ctx context.Context, storeName, key string, meta map[string]string) (*dapr.StateItem, error)
	GetBulkState(ctx context.Context, storeName string, keys []string, meta map[string]string, parallelism int32) ([]*dapr.BulkStateItem, error)
	ExecuteStateTransaction(ctx context.Context, storeName string, meta map[string]string, ops []*dapr.StateOperation) error
}

// Bounds of the outbox.
const (
	// OutboxTryTimeout bounds one publish. The sidecar's own retries while the broker
	// is down take much longer; a task must not wait for them.
	OutboxTryTimeout = 2 * time.Second
	outboxWaitMax    = 5 * time.Second
	// outboxStateTimeout bounds a state call made for Send: batches run apart from their
	// callers' contexts, so nothing else would.
	outboxStateTimeout = 5 * time.Second
	// outboxBatchMax bounds the Send and SendAll calls one batch serves.
	outboxBatchMax = 256
	// outboxBulkMax bounds the events of one bulk publish and of one drain step: the
	// sidecar takes gRPC messages up to 4 MiB, and an event is well under 1 KiB.
	outboxBulkMax = 512
)

// Outbox publishes lifecycle events and keeps the ones the broker does not take, in
// the state store, until it does: a Kafka outage neither stops tasks nor loses events.
//
// Send publishes at once while nothing is spooled; events the broker does not take, or
// all of them when events wait already, are appended to the owner's spool (one
// transaction: the entries and the head/tail counters) and Send returns. Sends and
// SendAlls that arrive while a publish is in flight gather and go out together, one
// bulk publish per topic and one spool transaction for the batch (internal/batch: a
// lone Send waits for nothing). Run drains the spool in order, a bulk publish at a
// time, an event removed only after the broker took it, so an event is published at
// least once; its id stays the same, so consumers can drop repeats. Each spool has one
// writer: owner must be unique to the process (app id and instance), and stable across
// its restarts so that a restarted process drains what its predecessor left.
//
// Order: within a topic, events go out in the order they were sent, except that when
// the broker takes some events of a bulk publish and not others, the ones it took are
// ahead of the spooled ones. Topics are not ordered with one another anyway.
type Outbox struct {
	logger *slog.Logger
	pub    BulkPublisher
	state  OutboxState
	store  string
	pubsub string
	owner  string
	sends  *batch.Batcher[*sendRequest]
	// packEvents bounds the events of one message (packMaxEvents; tests set less).
	packEvents int

	mu     sync.Mutex
	loaded bool
	head   uint64 // next entry to publish
	tail   uint64 // next entry to write
	wake   chan struct{}
}

// NewOutbox returns the outbox of owner, publishing to pubsub and spooling to store.
func NewOutbox(logger *slog.Logger, pub BulkPublisher, state OutboxState, pubsub, store, owner string) *Outbox {
	o := &Outbox{
		logger: logger.With("component", "outbox"), pub: pub, state: state,
		store: store, pubsub: pubsub, owner: owner, wake: make(chan struct{}, 1),
		packEvents: packMaxEvents,
	}
	// Batches run under a context of their own: an event a caller gave up waiting for
	// is still published or spooled.
	o.sends = batch.New(context.Background(), outboxBatchMax, o.sendBatch)
	return o
}

type outboxMeta struct {
	Head uint64 `json:"head"`
	Tail uint64 `json:"tail"`
}

func (o *Outbox) metaKey() string { return "outbox-" + o.owner + "-meta" }
func (o *Outbox) entryKey(seq uint64) string {
	return "outbox-" + o.owner + "-" + strconv.FormatUint(seq, 10)
}

// load reads the counters once. Call with mu held.
func (o *Outbox) load(ctx context.Context) error {
	if o.loaded {
		return nil
	}
	item, err := o.state.GetState(ctx, o.store, o.metaKey(), nil)
	if err != nil {
		return fmt.Errorf("outbox %s: read counters: %w", o.owner, err)
	}
	var m outboxMeta
	if item != nil && len(item.Value) > 0 {
		if err := json.Unmarshal(item.Value, &m); err != nil {
			return fmt.Errorf("outbox %s: decode counters: %w", o.owner, err)
		}
	}
	o.head, o.tail, o.loaded = m.Head, m.Tail, true
	return nil
}

// Depth is how many events wait in the spool (as far as this process knows).
func (o *Outbox) Depth() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int(o.tail - o.head)
}

// Send publishes e, or spools it when the broker does not take it. It returns an error
// only when the event could be neither published nor spooled (or ctx ended first: the
// event goes out all the same).
func (o *Outbox) Send(ctx context.Context, e Event) error { return o.SendAll(ctx, []Event{e}) }

// SendAll is Send for several events, which go out in one batch, in order. The error
// names the events that could be neither published nor spooled.
func (o *Outbox) SendAll(ctx context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	req := &sendRequest{events: evs}
	if err := o.sends.Do(ctx, req); err != nil {
		return fmt.Errorf("outbox %s: send %d events: %w", o.owner, len(evs), err)
	}
	return errors.Join(req.errs...)
}

// sendRequest is one Send or SendAll in a batch; the batch fills errs, one per event.
type sendRequest struct {
	events []Event
	errs   []error
}

// outEvent is an event on its way out: its topic and its encoding (published and
// spooled as the same bytes).
type outEvent struct {
	Event
	topic string
	data  []byte
}

// sendBatch serves the requests that gathered (batch.Batcher calls it, one at a time).
// Its error is always nil: each event's own outcome is in its request's errs.
func (o *Outbox) sendBatch(ctx context.Context, reqs []*sendRequest) error {
	var all []Event
	for _, r := range reqs {
		all = append(all, r.events...)
	}
	errs := o.send(ctx, all)
	for _, r := range reqs {
		r.errs, errs = errs[:len(r.events)], errs[len(r.events):]
	}
	return nil
}

// send publishes evs, or spools them, and returns one error per event.
func (o *Outbox) send(ctx context.Context, evs []Event) []error {
	errs := make([]error, len(evs))
	out, at := o.encodeAll(evs, errs)
	spool := make([]int, len(out)) // indexes into out, in order
	for j := range spool {
		spool[j] = j
	}
	if o.spoolEmpty(ctx) {
		failed, err := o.publish(ctx, out)
		if len(failed) > 0 {
			o.logger.InfoContext(ctx, "broker did not take events; spooling them",
				"events", len(failed), "of", len(out), "first_event_id", out[failed[0]].ID, "error", err)
		}
		spool = failed
	}
	if len(spool) == 0 {
		return errs
	}
	entries := make([]outEvent, len(spool))
	for k, j := range spool {
		entries[k] = out[j]
	}
	if err := o.spool(ctx, entries); err != nil {
		for _, j := range spool {
			errs[at[j]] = err
		}
	}
	return errs
}

// encodeAll encodes evs; at is the index in evs of each of out. An event that cannot
// be encoded (an unknown kind) gets its error in errs and is neither published nor
// spooled: the drain could never publish it either.
func (o *Outbox) encodeAll(evs []Event, errs []error) (out []outEvent, at []int) {
	out, at = make([]outEvent, 0, len(evs)), make([]int, 0, len(evs))
	for i, e := range evs {
		oe, err := encode(e)
		if err != nil {
			errs[i] = fmt.Errorf("outbox %s: %w", o.owner, err)
			continue
		}
		out, at = append(out, oe), append(at, i)
	}
	return out, at
}

func encode(e Event) (outEvent, error) {
	topic, err := Topic(e.Kind)
	if err != nil {
		return outEvent{}, fmt.Errorf("event %s: %w", e.ID, err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return outEvent{}, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return outEvent{Event: e, topic: topic, data: data}, nil
}

// spoolEmpty reports whether events may go straight to the broker: nothing waits in the
// spool (keeping order), or the spool cannot be read at all (then spooling would fail too).
func (o *Outbox) spoolEmpty(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, outboxStateTimeout)
	defer cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.load(ctx) != nil || o.head == o.tail
}

// spool appends evs to the spool in one transaction: their entries and the counters.
func (o *Outbox) spool(ctx context.Context, evs []outEvent) error {
	ctx, cancel := context.WithTimeout(ctx, outboxStateTimeout)
	defer cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.load(ctx); err != nil {
		return err
	}
	n := uint64(len(evs))
	ops := make([]*dapr.StateOperation, 0, len(evs)+1)
	for j, e := range evs {
		ops = append(ops, &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: o.entryKey(o.tail + uint64(j)), Value: e.data}})
	}
	meta, _ := json.Marshal(outboxMeta{Head: o.head, Tail: o.tail + n})
	ops = append(ops, &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: o.metaKey(), Value: meta}})
	if err := o.state.ExecuteStateTransaction(ctx, o.store, nil, ops); err != nil {
		return fmt.Errorf("outbox %s: spool %d events (first %s): %w", o.owner, n, evs[0].ID, err)
	}
	o.tail += n
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// publish sends evs to the broker, one bulk publish per topic (the topics at once, up
// to outboxBulkMax events a call), bounded by OutboxTryTimeout. It returns the indexes
// of the events the broker did not take, in order, and an error saying why.
func (o *Outbox) publish(ctx context.Context, evs []outEvent) (failed []int, err error) {
	if len(evs) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, OutboxTryTimeout)
	defer cancel()
	byTopic := map[string][]int{}
	var topics []string
	for i, e := range evs {
		if _, ok := byTopic[e.topic]; !ok {
			topics = append(topics, e.topic)
		}
		byTopic[e.topic] = append(byTopic[e.topic], i)
	}
	refused := make([]bool, len(evs)) // each goroutine sets its own topic's elements
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, topic := range topics {
		wg.Go(func() {
			idx := byTopic[topic]
			for len(idx) > 0 {
				chunk := idx[:min(len(idx), outboxBulkMax)]
				idx = idx[len(chunk):]
				if cerr := o.publishChunk(ctx, topic, evs, chunk, refused); cerr != nil {
					mu.Lock()
					err = errors.Join(err, cerr)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for i, r := range refused {
		if r {
			failed = append(failed, i)
		}
	}
	return failed, err
}

// publishChunk bulk-publishes the events evs[i], i in chunk, all of one topic, in packs
// (see pack.go), and marks in refused the events of the packs the broker did not take.
//
// Each entry carries the metadata Publish gives a message: daprd (v1.18.2,
// bulkPublishEvent) builds each entry's CloudEvent from that entry's own metadata
// (cloudevent.id overrides the envelope's id: a pack's id is its first event's, with
// the count), and pubsub.kafka takes each entry's partitionKey (the first event's task)
// as its message key. Entry ids only need to be unique within the call (daprd refuses
// the whole call otherwise): the entry id is the pack's position in the call.
func (o *Outbox) publishChunk(ctx context.Context, topic string, evs []outEvent, chunk []int, refused []bool) error {
	packs := splitPacks(evs, chunk, o.packEvents)
	entries := make([]any, len(packs))
	for j, p := range packs {
		entries[j] = dapr.PublishEventsEvent{
			EntryID: strconv.Itoa(j), Data: encodePack(evs, p), ContentType: PackContentType,
			Metadata: packMetadata(evs[p[0]].Event, len(p)),
		}
	}
	resp := o.pub.PublishEvents(ctx, o.pubsub, topic, entries)
	for _, j := range refusedEntries(resp, len(packs)) {
		for _, i := range packs[j] {
			refused[i] = true
		}
	}
	if resp.Error != nil {
		return fmt.Errorf("publish %d events to %s: %w", len(chunk), topic, resp.Error)
	}
	return nil
}

// refusedEntries returns the positions of the entries of a bulk publish of n that the
// broker did not take. go-sdk lists them in FailedEvents as the values it was given;
// an answer it cannot match to an entry (it then lists the entry id, or nil), or an
// error that lists none, counts as all refused: publishing again is harmless, losing
// is not. (daprd v1.18.2 answers a partial failure as an error for the whole call, so
// go-sdk lists every entry then.)
func refusedEntries(resp dapr.PublishEventsResponse, n int) []int {
	if resp.Error == nil && len(resp.FailedEvents) == 0 {
		return nil
	}
	all := make([]int, n)
	for j := range all {
		all[j] = j
	}
	if len(resp.FailedEvents) == 0 {
		return all
	}
	seen := make([]bool, n)
	for _, fe := range resp.FailedEvents {
		ev, ok := fe.(dapr.PublishEventsEvent)
		j, err := strconv.Atoi(ev.EntryID)
		if !ok || err != nil || j < 0 || j >= n {
			return all
		}
		seen[j] = true
	}
	var out []int
	for j, s := range seen {
		if s {
			out = append(out, j)
		}
	}
	return out
}

// Run drains the spool until ctx ends: oldest first, each event removed once published.
func (o *Outbox) Run(ctx context.Context) {
	wait := time.Duration(0)
	for {
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		sent, err := o.drain(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			o.logger.WarnContext(ctx, "could not publish spooled events; retrying", "error", err, "published", sent, "spooled", o.Depth())
			wait = min(max(2*wait, 100*time.Millisecond), outboxWaitMax)
		case sent > 0:
			wait = 0
		default: // empty: sleep until something is spooled (or a second passes)
			wait = 0
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			case <-time.After(time.Second):
			}
		}
	}
}

// drain publishes up to outboxBulkMax of the oldest spooled events (one bulk read, a
// bulk publish per topic) and removes those before the first one the broker did not
// take (one transaction); sent is how many it removed. Events after a refused one that
// the broker took stay spooled and go again next time (same ids).
func (o *Outbox) drain(ctx context.Context) (sent int, err error) {
	o.mu.Lock()
	if err := o.load(ctx); err != nil {
		o.mu.Unlock()
		return 0, err
	}
	head, tail := o.head, o.tail
	o.mu.Unlock()
	if head == tail {
		return 0, nil
	}
	evs, seqs, n, err := o.readSpool(ctx, head, min(tail-head, outboxBulkMax))
	if n == 0 {
		return 0, err
	}
	failed, perr := o.publish(ctx, evs)
	if len(failed) > 0 {
		n = seqs[failed[0]] - head // keep the first refused event and what follows
		err = errors.Join(err, perr)
	}
	if n == 0 {
		return 0, err
	}
	if rerr := o.remove(ctx, head, n); rerr != nil {
		return 0, errors.Join(err, rerr)
	}
	return int(n), err
}

// readSpool reads the entries head, head+1, ..., head+limit-1 in one call and returns
// the events among them and their sequence numbers. n is how many entries were read:
// fewer than limit when one could not be (err says why). An empty entry has nothing to publish;
// an entry that is not an event is dropped (logged): it would block the spool for good.
func (o *Outbox) readSpool(ctx context.Context, head, limit uint64) (evs []outEvent, seqs []uint64, n uint64, err error) {
	keys := make([]string, limit)
	for j := range keys {
		keys[j] = o.entryKey(head + uint64(j))
	}
	items, err := o.state.GetBulkState(ctx, o.store, keys, nil, 0)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("outbox %s: read entries %d to %d: %w", o.owner, head, head+limit-1, err)
	}
	byKey := make(map[string]*dapr.BulkStateItem, len(items))
	for _, it := range items {
		if it != nil {
			byKey[it.Key] = it
		}
	}
	for ; n < limit; n++ {
		seq := head + n
		it, ok := byKey[keys[n]]
		if !ok || it.Error != "" {
			msg := "missing from the answer"
			if ok {
				msg = it.Error
			}
			return evs, seqs, n, fmt.Errorf("outbox %s: read entry %d: %s", o.owner, seq, msg)
		}
		if len(it.Value) == 0 {
			continue
		}
		e, derr := Decode(it.Value)
		if derr != nil {
			o.logger.ErrorContext(ctx, "dropping a spooled entry that is not an event", "seq", seq, "error", derr)
			continue
		}
		oe, eerr := encode(e)
		if eerr != nil {
			o.logger.ErrorContext(ctx, "dropping a spooled event that cannot be published", "seq", seq, "error", eerr)
			continue
		}
		oe.data = it.Value // publish what was spooled, byte for byte
		evs, seqs = append(evs, oe), append(seqs, seq)
	}
	return evs, seqs, n, nil
}

// remove deletes the entries head..head+n-1 and moves the head past them, in one
// transaction.
func (o *Outbox) remove(ctx context.Context, head, n uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	ops := make([]*dapr.StateOperation, 0, n+1)
	for seq := head; seq < head+n; seq++ {
		ops = append(ops, &dapr.StateOperation{Type: dapr.StateOperationTypeDelete, Item: &dapr.SetStateItem{Key: o.entryKey(seq)}})
	}
	meta, _ := json.Marshal(outboxMeta{Head: head + n, Tail: o.tail})
	ops = append(ops, &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: o.metaKey(), Value: meta}})
	if err := o.state.ExecuteStateTransaction(ctx, o.store, nil, ops); err != nil {
		return fmt.Errorf("outbox %s: remove entries %d to %d: %w", o.owner, head, head+n-1, err)
	}
	o.head = head + n
	return nil
}
