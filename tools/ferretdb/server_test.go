package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// client talks to the patched FerretDB that TestMain builds (as scripts/stack.sh does) and starts.
// Go's test cache does not see build.sh's inputs: run the tests with -count=1 after changing a patch.
var client *mongo.Client

func TestMain(m *testing.M) {
	os.Exit(runWithServer(m))
}

func runWithServer(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ferretdb-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}()

	binary := filepath.Join(dir, "ferretdb")
	build := exec.Command("./build.sh", binary)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build.sh:", err)
		return 1
	}

	addr, err := freeAddress()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	data := filepath.Join(dir, "data")
	if keep := os.Getenv("FERRETDB_TEST_DATA"); keep != "" {
		data = keep
	}

	// FerretDB logs every error it answers; the tests provoke some.
	log, err := os.Create(filepath.Join(dir, "ferretdb.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer log.Close()

	server := exec.Command(binary, "-listen", addr, "-data", data)
	server.Stderr = log
	// The server dies with the test binary, even when a test panics or the run is killed.
	server.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := server.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		_ = server.Process.Kill()
		_ = server.Wait()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := awaitPort(ctx, addr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	client, err = mongo.Connect(ctx, options.Client().ApplyURI("mongodb://"+addr+"/"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer client.Disconnect(context.Background())

	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "FerretDB's log is in", log.Name())
		dir = "" // keep it
	}

	return code
}

func freeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()

	return l.Addr().String(), nil
}

func awaitPort(ctx context.Context, addr string) error {
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}

		select {
		case <-ctx.Done():
			return fmt.Errorf("FerretDB did not listen on %s: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
