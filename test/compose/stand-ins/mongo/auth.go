// Authentication as the official mongo:7 image sets it up, for the stand-in's FerretDB: when
// MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD (or their _FILE variants) are set, a
// login is required for every command but the handshake and ping, and that user is created in the
// admin database on the first start (an empty data directory); without them it runs open, as
// mongo:7 does. scripts/lib/docker-images.sh adds this file to tools/ferretdb's command, and
// main.patch calls it there.
package main

import (
	"log"
	"os"
	"strings"

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

// authFromEnv turns on authentication in config when the official image's variables ask for it.
func authFromEnv(config *ferretdb.Config) {
	user, password := fromEnv("MONGO_INITDB_ROOT_USERNAME"), fromEnv("MONGO_INITDB_ROOT_PASSWORD")
	if (user == "") != (password == "") {
		log.Fatal("set both MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD, or neither")
	}
	if user != "" {
		config.EnableNewAuth = true
		config.SetupDatabase, config.SetupUsername, config.SetupPassword = "admin", user, password
	}
	log.Printf("authentication %v", config.EnableNewAuth)
}
