package stacktest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// RedisTTL asks the stack's Redis for the time to live of key, in seconds, as Redis's TTL
// answers it: -1 when the key has no expiry, -2 when it does not exist. Tests read what
// the state store set beneath Dapr with it (Dapr's API does not say).
func (s *Stack) RedisTTL(ctx context.Context, key string) (int64, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.RedisAddr)
	if err != nil {
		return 0, fmt.Errorf("redis TTL %s: %w", key, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	_ = conn.SetDeadline(deadline)
	if _, err := fmt.Fprintf(conn, "*2\r\n$3\r\nTTL\r\n$%d\r\n%s\r\n", len(key), key); err != nil {
		return 0, fmt.Errorf("redis TTL %s: %w", key, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("redis TTL %s: %w", key, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, ":") {
		return 0, fmt.Errorf("redis TTL %s: answered %q", key, line)
	}
	return strconv.ParseInt(line[1:], 10, 64)
}

// AwaitRedisTTL is RedisTTL once key has an expiry, or after 5 s without one (-1): a
// batch of task records gets its expiry just after its write (taskstore.WithRetention).
func (s *Stack) AwaitRedisTTL(ctx context.Context, key string) (int64, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := s.RedisTTL(ctx, key)
		if err != nil || v != -1 || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
