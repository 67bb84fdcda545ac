// Command ferretdb is the mongo:7 stand-in of scripts/compose-test.sh: tools/ferretdb's server
// (FerretDB on SQLite) with authentication as the official image sets it up. When
// MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD (or their _FILE variants) are set, it
// requires a login for every command but the handshake and ping, and creates that user in the
// admin database on its first start (an empty data directory); without them it runs open, as
// mongo:7 does.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// fromEnv returns NAME, or the contents of the file NAME_FILE names, as the official image does.
func fromEnv(name string) string {
	if file := os.Getenv(name + "_FILE"); file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			log.Fatalf("%s_FILE: %v", name, err)
		}
		return strings.TrimRight(string(data), "\r\n")
	}
	return os.Getenv(name)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to serve the MongoDB protocol on")
	dataDir := flag.String("data", "data/", "directory for the SQLite files (created if missing)")
	flag.Parse()

	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		log.Fatal(err)
	}

	config := &ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dataDir + "/",
	}
	user, password := fromEnv("MONGO_INITDB_ROOT_USERNAME"), fromEnv("MONGO_INITDB_ROOT_PASSWORD")
	if (user == "") != (password == "") {
		log.Fatal("set both MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD, or neither")
	}
	if user != "" {
		config.EnableNewAuth = true
		config.SetupDatabase, config.SetupUsername, config.SetupPassword = "admin", user, password
	}

	server, err := ferretdb.New(config)
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	log.Printf("ferretdb listening on %s, data in %s, authentication %v", *listen, *dataDir, config.EnableNewAuth)
	if err := server.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
