// Command ferretdb-sqlite runs an embedded FerretDB on the SQLite backend,
// so that tests can talk the MongoDB wire protocol to a local server
// without a MongoDB install or a container.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (host:port)")
	dataDir := flag.String("data-dir", "data", "directory that holds the SQLite database files")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	sync := flag.String("sqlite-synchronous", "normal",
		"SQLite synchronous pragma: full syncs the disk at every commit, normal only at checkpoints")
	flag.Parse()

	if err := run(*listen, *dataDir, *logLevel, *sync); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-sqlite: %v\n", err)
		os.Exit(1)
	}
}

// run starts FerretDB and blocks until SIGINT or SIGTERM.
func run(listen, dataDir, logLevel, sync string) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("bad -log-level %q: %w", logLevel, err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("bad -data-dir %q: %w", dataDir, err)
	}

	if err = os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}

	switch sync {
	case "off", "normal", "full":
	default:
		return fmt.Errorf("bad -sqlite-synchronous %q: want off, normal or full", sync)
	}

	// The SQLite handler takes a directory URI, which must end with a slash.
	// In WAL mode (FerretDB's default) synchronous=normal commits without a
	// disk sync, which survives a crash of the server but not of the machine:
	// right for development and tests, where a sync per write made every
	// update take over ten milliseconds.
	sqliteURL := "file:" + strings.TrimSuffix(dir, "/") + "/?_pragma=synchronous(" + sync + ")"

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	go indexIDs(ctx, dir, 200*time.Millisecond, logger)

	// Always logged, whatever the level, so the log shows each start.
	fmt.Fprintf(os.Stderr, "ferretdb-sqlite: listening on %s, data in %s\n", listen, sqliteURL)

	return f.Run(ctx)
}
