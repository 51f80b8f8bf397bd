//go:build ignore

// Registers the project's name resolver (deploy/daprd/sqlitecache) in daprd:
// deploy/scripts/install-dapr.sh copies this file into the runtime's
// cmd/daprd/components without its build line, and the package into pkg/taskgrid.

package components

import (
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	"github.com/dapr/dapr/pkg/taskgrid/sqlitecache"
)

func init() {
	nrLoader.DefaultRegistry.RegisterComponent(sqlitecache.NewResolver, "sqlitecache")
}
