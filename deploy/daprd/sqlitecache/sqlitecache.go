// Package sqlitecache is the name resolver of the local daprd: components-contrib's
// SQLite resolver, which registers this sidecar and finds the others in a SQLite file,
// with one method more, ResolveIDMulti (every live address of an app). daprd caches what a
// resolver returns through that method, for 20 s, and drops it when a call to one of the
// addresses fails as unavailable; of a resolver without it, daprd asks on every service
// invocation, and the SQLite query took 0.5 ms of each of the worker's calls to the
// storekeeper at 10 tasks/s (README, "Benchmarks"). deploy/scripts/install-dapr.sh
// compiles this package into daprd as the name resolution component "sqlitecache"
// (components/config.yaml); on Kubernetes Dapr's own images resolve through DNS instead.
//
// The package is built inside the runtime's module, so it imports only what daprd
// v1.18.2's module requires (deploy/versions.env); this directory's go.mod is for its
// tests, at the same versions.
package sqlitecache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	authsqlite "github.com/dapr/components-contrib/common/authentication/sqlite"
	"github.com/dapr/components-contrib/nameresolution"
	"github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/kit/logger"
	kitmd "github.com/dapr/kit/metadata"
)

// The defaults of the SQLite resolver's own metadata (components-contrib
// nameresolution/sqlite), which this resolver reads too.
const (
	defaultTableName      = "hosts"
	defaultUpdateInterval = 5 * time.Second
	defaultTimeout        = time.Second
	defaultBusyTimeout    = 800 * time.Millisecond
)

// Resolver is the SQLite resolver with ResolveIDMulti.
type Resolver struct {
	nameresolution.Resolver // components-contrib's: registers this host, renews it, ResolveID

	logger  logger.Logger
	db      *sql.DB
	query   string
	timeout time.Duration
}

// NewResolver returns the resolver (daprd's registry calls it).
func NewResolver(log logger.Logger) nameresolution.Resolver {
	return &Resolver{Resolver: sqlite.NewResolver(log), logger: log}
}

// metadata is the part of the SQLite resolver's configuration a lookup needs.
type metadata struct {
	authsqlite.SqliteAuthMetadata `mapstructure:",squash"`

	TableName      string        `mapstructure:"tableName"`
	UpdateInterval time.Duration `mapstructure:"updateInterval"`
}

// Init initialises the SQLite resolver (which checks the configuration, creates the
// tables and registers this host), then opens the database for lookups.
func (r *Resolver) Init(ctx context.Context, md nameresolution.Metadata) error {
	if err := r.Resolver.Init(ctx, md); err != nil {
		return err
	}
	var m metadata
	m.Reset()
	m.Timeout, m.BusyTimeout = defaultTimeout, defaultBusyTimeout
	m.TableName, m.UpdateInterval = defaultTableName, defaultUpdateInterval
	if err := kitmd.DecodeMetadata(md.Configuration, &m); err != nil {
		return fmt.Errorf("sqlitecache: read configuration: %w", err)
	}
	if !authsqlite.ValidIdentifier(m.TableName) {
		return fmt.Errorf("sqlitecache: invalid table name %q", m.TableName)
	}
	conn, err := m.GetConnectionString(r.logger, authsqlite.GetConnectionStringOpts{})
	if err != nil {
		return fmt.Errorf("sqlitecache: %w", err)
	}
	if r.db, err = sql.Open("sqlite", conn); err != nil {
		return fmt.Errorf("sqlitecache: open the database: %w", err)
	}
	// The rows the SQLite resolver's ResolveID picks from: the app's hosts that renewed
	// their registration within the update interval.
	r.query = fmt.Sprintf("SELECT address FROM %s WHERE app_id = ? AND unixepoch(CURRENT_TIMESTAMP) - last_update < %d",
		m.TableName, int(m.UpdateInterval.Seconds()))
	r.timeout = m.Timeout
	return nil
}

// ResolveIDMulti returns every live address of the app req names.
func (r *Resolver) ResolveIDMulti(ctx context.Context, req nameresolution.ResolveRequest) (nameresolution.AddressList, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	rows, err := r.db.QueryContext(ctx, r.query, req.ID)
	if err != nil {
		return nil, fmt.Errorf("failed to look up addresses: %w", err)
	}
	defer rows.Close()
	var addrs nameresolution.AddressList
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("failed to look up addresses: %w", err)
		}
		addrs = append(addrs, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to look up addresses: %w", err)
	}
	if len(addrs) == 0 {
		return nil, sqlite.ErrNoHost
	}
	return addrs, nil
}

// Close closes the lookups' database, then the SQLite resolver (which unregisters this
// host).
func (r *Resolver) Close() error {
	var err error
	if r.db != nil {
		err = r.db.Close()
	}
	return errors.Join(err, r.Resolver.Close())
}
