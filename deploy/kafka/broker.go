package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
)

// errConfig marks an invalid configuration; main exits 2 on it.
var errConfig = errors.New("invalid configuration")

// maxPartitions bounds -partitions so a typo does not allocate millions of partitions.
const maxPartitions = 10000

// Config is what the broker needs to start.
type Config struct {
	Addr       string   // host:port to listen on; the host must be a loopback or test-host address
	DataDir    string   // kfake.DataDir: topics, records and committed offsets live here
	SyncWrites bool     // kfake.SyncWrites: fsync every produced batch and every group log entry
	Topics     []string // created at start with Partitions partitions if they do not exist yet
	Partitions int      // partitions of Topics, and of auto-created topics
	ReadyFile  string   // if set, the listen address is written here once clients can connect
}

func (c Config) validate() error {
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("%w: -addr %q: want host:port (%v)", errConfig, c.Addr, err)
	}
	if !isLoopback(host) && !isTestHost(host) {
		return fmt.Errorf("%w: -addr %q: host must be a loopback address (127.0.0.0/8, ::1 or localhost) or a test host's (198.18.0.0/15): this broker is for local development and tests only", errConfig, c.Addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%w: -addr %q: port must be a number from 0 to 65535", errConfig, c.Addr)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: -data-dir (or KAFKA_DATA_DIR) is required: the broker keeps topics, records and committed offsets there", errConfig)
	}
	if c.Partitions < 1 || c.Partitions > maxPartitions {
		return fmt.Errorf("%w: -partitions %d: must be from 1 to %d", errConfig, c.Partitions, maxPartitions)
	}
	for _, t := range c.Topics {
		if err := validTopic(t); err != nil {
			return fmt.Errorf("%w: -topics: %v", errConfig, err)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// testHosts is the range RFC 2544 reserves for benchmark networks, which the multi-host
// tests give their network namespaces (internal/testharness/netlab): routed nowhere.
var testHosts = netip.MustParsePrefix("198.18.0.0/15")

func isTestHost(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && testHosts.Contains(ip.Unmap())
}

// validTopic applies Kafka's topic name rules, so a bad name fails at start and not at the first produce.
func validTopic(t string) error {
	if t == "" || t == "." || t == ".." || len(t) > 249 {
		return fmt.Errorf("topic name %q: must be 1 to 249 characters and not \".\" or \"..\"", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q: only ASCII letters, digits, '.', '_' and '-' are allowed", t)
		}
	}
	return nil
}

// splitTopics turns "a, b,,a" into [a b].
func splitTopics(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Run serves a one-broker kfake cluster on cfg.Addr until ctx is done, then closes it
// (which writes its state to cfg.DataDir) and returns nil.
func Run(ctx context.Context, logger *slog.Logger, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	// kfake listens on 127.0.0.1:<port>; ListenFn makes it listen on cfg.Addr instead
	// (so ::1 and localhost work too) and turns EADDRINUSE into a message a person can act on.
	// kfake calls it before it reads the data dir, which is when we lock the data dir:
	// kfake does not, and two brokers writing one data dir corrupt it.
	var lock *os.File
	defer func() {
		if lock != nil {
			lock.Close() // releases the lock
		}
	}()
	listen := func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, cfg.Addr)
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s is already in use (is another broker running? pass -addr)", cfg.Addr)
		} else if err != nil {
			return nil, err
		}
		if lock, err = lockDir(cfg.DataDir); err != nil {
			ln.Close()
			return nil, err
		}
		return ln, nil
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(listen),
		kfake.DataDir(cfg.DataDir),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.WithLogger(kfakeLogger{logger.With("component", "kfake")}),
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if len(cfg.Topics) > 0 {
		// Only applied to an empty data dir; ensureTopics covers a data dir from an earlier run.
		opts = append(opts, kfake.SeedTopics(int32(cfg.Partitions), cfg.Topics...))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	if err := ensureTopics(logger, cluster, cfg.Topics, cfg.Partitions); err != nil {
		cluster.Close()
		return err
	}
	addr := cluster.ListenAddrs()[0]
	// The start line before the ready file: whoever waits for the file finds the line logged.
	logger.Info("kafka broker started", "addr", addr, "data_dir", cfg.DataDir, "topics", append([]string{}, cfg.Topics...),
		"partitions", cfg.Partitions, "sync_writes", cfg.SyncWrites)
	if cfg.ReadyFile != "" {
		if err := writeFileAtomic(cfg.ReadyFile, addr+"\n"); err != nil {
			cluster.Close()
			return fmt.Errorf("writing ready file: %w", err)
		}
	}

	<-ctx.Done()
	if cfg.ReadyFile != "" {
		_ = os.Remove(cfg.ReadyFile) // we are no longer ready; a script waiting for a restart must not see it
	}
	cluster.Close() // with a DataDir this also saves the full state before returning
	logger.Info("kafka broker stopped", "addr", addr, "reason", context.Cause(ctx).Error())
	return nil
}

// ensureTopics creates the topics that do not exist yet (a data dir from an earlier run
// ignores SeedTopics). A topic that exists keeps its partitions; a different count is logged.
func ensureTopics(logger *slog.Logger, c *kfake.Cluster, topics []string, partitions int) error {
	for _, t := range topics {
		if c.TopicInfo(t) != nil {
			if n := len(c.PartitionInfos(t)); n != partitions {
				logger.Warn("topic exists with a different partition count; leaving it as is",
					"topic", t, "partitions", n, "wanted", partitions)
			}
			continue
		}
		if err := c.CreateTopic(t, int32(partitions), nil); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %q: %w", t, err)
		}
	}
	return nil
}

// lockDir takes an exclusive flock on dir/broker.lock, creating dir if needed. The kernel
// drops the lock when the process exits, SIGKILL included, so it never goes stale.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "broker.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another broker (pass another -data-dir)", dir)
		}
		return nil, fmt.Errorf("locking data dir %s: %w", dir, err)
	}
	return f, nil
}

func writeFileAtomic(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// kfakeLogger forwards kfake's errors and warnings to slog; its info and debug output is
// a line per request, too much for a development broker.
type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		k.l.Error(fmt.Sprintf(format, args...))
	case kfake.LogLevelWarn:
		k.l.Warn(fmt.Sprintf(format, args...))
	}
}
