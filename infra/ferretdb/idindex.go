package main

// FerretDB 1.24 creates the `_id` index of a collection on the SQLite
// expression `_ferretdb_sjson->"_id"`, but looks documents up by
// `_ferretdb_sjson->'$._id'`. SQLite matches an index to a query by the
// expression's text, so it never uses that index: every find, update and
// delete by `_id` reads the whole table, and a write costs time in proportion
// to the collection's size (50 ms per update at 8,000 small documents).
//
// indexIDs repairs that from outside: it adds to every collection table an
// index on the expression FerretDB's queries use. FerretDB does not know of
// the extra index; SQLite keeps it up to date and drops it with its table.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself links in
)

// idIndexSuffix names our index after its table, as FerretDB names its own
// "<table>_<index name>"; a MongoDB index would have to be called
// "tm_id_lookup" to clash.
const idIndexSuffix = "_tm_id_lookup"

// fileState is what a database file looked like when it was last found to
// need nothing, so that an unchanged file is not opened again.
type fileState struct {
	size, walSize int64
	mod, walMod   time.Time
}

func stateOf(path string) (fileState, bool) {
	main, err := os.Stat(path)
	if err != nil {
		return fileState{}, false
	}
	s := fileState{size: main.Size(), mod: main.ModTime()}
	if wal, err := os.Stat(path + "-wal"); err == nil {
		s.walSize, s.walMod = wal.Size(), wal.ModTime()
	}
	return s, true
}

// indexIDs checks the database files in dir every interval until ctx ends.
func indexIDs(ctx context.Context, dir string, every time.Duration, logger *slog.Logger) {
	settled := map[string]fileState{}
	tick := time.NewTicker(every)
	defer tick.Stop()

	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		seen := make(map[string]bool, len(files))
		for _, path := range files {
			seen[path] = true
			before, ok := stateOf(path)
			if !ok || settled[path] == before {
				continue
			}
			created, err := indexFile(ctx, path)
			if err != nil {
				// The file may be in the middle of being dropped; try again later.
				logger.Debug("id index check failed", "file", path, "error", err)
				delete(settled, path)
				continue
			}
			for _, table := range created {
				logger.Info("added the _id lookup index", "file", filepath.Base(path), "table", table)
			}
			// Our own index creation changed the file: record its state after it.
			if after, ok := stateOf(path); ok {
				settled[path] = after
			}
		}
		for path := range settled {
			if !seen[path] {
				delete(settled, path)
			}
		}

		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// indexFile adds the missing indexes in one database file and names the
// tables it added them to.
func indexFile(ctx context.Context, path string) ([]string, error) {
	// mode=rw: never create a file FerretDB has just removed.
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	rows, err := db.QueryContext(ctx, `
		SELECT c.table_name FROM _ferretdb_collections AS c
		WHERE NOT EXISTS (
			SELECT 1 FROM sqlite_master AS m
			WHERE m.type = 'index' AND m.name = c.table_name || ?
		)`, idIndexSuffix)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil, nil // a database FerretDB has not set up yet
		}
		return nil, err
	}
	var missing []string
	for rows.Next() {
		var table string
		if err = rows.Scan(&table); err != nil {
			rows.Close()
			return nil, err
		}
		missing = append(missing, table)
	}
	rows.Close()
	if err = rows.Err(); err != nil {
		return nil, err
	}

	var created []string
	for _, table := range missing {
		q := fmt.Sprintf(
			`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`,
			table+idIndexSuffix, table,
		)
		if _, err = db.ExecContext(ctx, q); err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue // dropped meanwhile
			}
			return created, err
		}
		created = append(created, table)
	}
	return created, nil
}
