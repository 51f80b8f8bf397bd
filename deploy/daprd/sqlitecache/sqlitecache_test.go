package sqlitecache

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dapr/components-contrib/nameresolution"
	"github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/kit/logger"
)

// start registers a sidecar of app at port in the database at path, as daprd does, with
// the resolver's configuration conf besides the connection string.
func start(t *testing.T, path, app string, port int, conf map[string]string) *Resolver {
	t.Helper()
	r := NewResolver(logger.NewLogger("test")).(*Resolver)
	configuration := map[string]string{"connectionString": path}
	maps.Copy(configuration, conf)
	err := r.Init(t.Context(), nameresolution.Metadata{
		Instance:      nameresolution.Instance{AppID: app, Address: "127.0.0.1", DaprInternalPort: port},
		Configuration: configuration,
	})
	if err != nil {
		t.Fatalf("init %s:%d: %v", app, port, err)
	}
	return r
}

func resolve(t *testing.T, r *Resolver, app string) ([]string, error) {
	t.Helper()
	addrs, err := r.ResolveIDMulti(t.Context(), nameresolution.ResolveRequest{ID: app})
	slices.Sort(addrs)
	return addrs, err
}

// ResolveIDMulti answers every live address of an app, as ResolveID picks one of them:
// not another app's, not one whose sidecar stopped (it unregisters), not one whose
// registration was not renewed within the update interval (a sidecar killed).
func TestResolveIDMulti(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nr.db")
	worker := start(t, path, "worker", 5000, nil)
	defer worker.Close()
	a := start(t, path, "storekeeper", 5001, nil)
	// b renews its registration hourly: the test marks it stale below, and a renewal
	// (every 4 s by default) in between would make it live again.
	b := start(t, path, "storekeeper", 5002, map[string]string{"updateInterval": "1h"})
	defer b.Close()

	got, err := resolve(t, worker, "storekeeper")
	if want := []string{"127.0.0.1:5001", "127.0.0.1:5002"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("storekeeper = %v, %v; want %v", got, err, want)
	}
	if one, err := worker.ResolveID(t.Context(), nameresolution.ResolveRequest{ID: "storekeeper"}); err != nil || !slices.Contains(got, one) {
		t.Fatalf("ResolveID = %q, %v: not one of %v", one, err, got)
	}
	if got, err := resolve(t, a, "worker"); err != nil || !slices.Equal(got, []string{"127.0.0.1:5000"}) {
		t.Fatalf("worker = %v, %v", got, err)
	}
	if _, err := resolve(t, worker, "nobody"); !errors.Is(err, sqlite.ErrNoHost) {
		t.Fatalf("nobody: %v, want ErrNoHost", err)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := resolve(t, worker, "storekeeper"); err != nil || !slices.Equal(got, []string{"127.0.0.1:5002"}) {
		t.Fatalf("after one stopped: %v, %v", got, err)
	}

	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "UPDATE hosts SET last_update = last_update - 60 WHERE address = '127.0.0.1:5002'"); err != nil {
		t.Fatal(err)
	}
	if got, err := resolve(t, worker, "storekeeper"); !errors.Is(err, sqlite.ErrNoHost) {
		t.Fatalf("a registration not renewed for a minute: %v, %v; want none (ErrNoHost)", got, err)
	}
}

// A configuration the SQLite resolver refuses fails Init.
func TestInitRefusesABadConfiguration(t *testing.T) {
	r := NewResolver(logger.NewLogger("test"))
	err := r.Init(t.Context(), nameresolution.Metadata{
		Instance:      nameresolution.Instance{AppID: "x", Address: "127.0.0.1", DaprInternalPort: 1},
		Configuration: map[string]string{"connectionString": filepath.Join(t.TempDir(), "nr.db"), "tableName": "no such;table"},
	})
	if err == nil {
		r.Close()
		t.Fatal("Init accepted an invalid table name")
	}
}
