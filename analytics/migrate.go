package main

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/taskgrid/taskgrid/internal/adapters/mysqlbinding"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the numbered SQL files of migrations/ that the database has not seen,
// in order, and records each in schema_migrations. Each file is split into statements
// at ";" line ends (the binding runs one statement per call), and every statement is
// written to be safe to run again, so a migration cut short is finished at the next start.
func Migrate(ctx context.Context, db SQL) error {
	if err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INT NOT NULL PRIMARY KEY,
  applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var applied []struct {
		Version mysqlbinding.Int `json:"version"`
	}
	if err := db.Query(ctx, &applied, "SELECT version FROM schema_migrations"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	done := map[int]bool{}
	for _, a := range applied {
		done[int(a.Version)] = true
	}
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	slices.Sort(files)
	for _, f := range files {
		version, err := strconv.Atoi(strings.SplitN(path.Base(f), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migrate: file %s is not <number>_<name>.sql", f)
		}
		if done[version] {
			continue
		}
		text, err := migrations.ReadFile(f)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for _, stmt := range mysqlbinding.Statements(string(text)) {
			if err := db.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migrate %s: %w", f, err)
			}
		}
		if err := db.Exec(ctx, "INSERT IGNORE INTO schema_migrations (version) VALUES (?)", version); err != nil {
			return fmt.Errorf("migrate %s: %w", f, err)
		}
	}
	return nil
}
