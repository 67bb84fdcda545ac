// Command readbench measures the task list's reads on a FerretDB (or MongoDB) with many stored
// tasks, and FerretDB's CPU per inserted task on an empty collection and a full one:
//
//	go run ./readbench -uri mongodb://127.0.0.1:27117/ -pid $(pgrep -nf 'ferretdb -listen 127.0.0.1:27117') -seed 1000000
//
// It seeds the collection bench.tasks (created with the task list's index, as the tasks service
// does) with task documents in batches of 1000, then times the newest page and a keyset page deep
// in the collection, and prints the figures as JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

const batch = 1000

var (
	listIndex = bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}
	start     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func main() {
	uri := flag.String("uri", "mongodb://127.0.0.1:27117/", "the store")
	pid := flag.Int("pid", 0, "the store's process id, to read its CPU time from /proc (0: no CPU figures)")
	seed := flag.Int("seed", 0, "drop bench.tasks and store this many tasks first (0: use the stored ones)")
	cpuBatches := flag.Int("cpu-batches", 10, "batches of 1000 timed for the CPU per insert, on an empty collection (with -seed) and on the stored ones (with -pid)")
	rounds := flag.Int("rounds", 200, "reads of each page (0: none)")
	given := flag.Int("stored", 0, "without -seed: how many tasks bench.tasks holds (as seeded, from 0 on)")
	flag.Parse()

	ctx := context.Background()

	client, err := mongo.Connect(ctx, options.Client().ApplyURI(*uri).SetTimeout(10*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Disconnect(ctx)

	tasks := client.Database("bench").Collection("tasks")
	result := map[string]any{}

	if *seed > 0 {
		if err := tasks.Drop(ctx); err != nil {
			log.Fatal(err)
		}

		index := mongo.IndexModel{Keys: listIndex, Options: options.Index().SetName("created_at_-1__id_-1")}
		if _, err := tasks.Indexes().CreateOne(ctx, index); err != nil {
			log.Fatal(err)
		}

		result["insertCpuMsPerTaskEmpty"] = insertCPU(ctx, tasks, *pid, 0, *cpuBatches)
		log.Printf("store CPU per insert on an empty collection: %.3f ms", result["insertCpuMsPerTaskEmpty"])

		began := time.Now()
		for from := *cpuBatches * batch; from < *seed; from += batch {
			insert(ctx, tasks, from, min(batch, *seed-from))

			if from%100_000 == 0 {
				log.Printf("%d tasks stored (%s)", from, time.Since(began).Round(time.Second))
			}
		}
	}

	// Given, not counted: FerretDB counts by reading every document.
	stored := int64(*seed)
	if stored == 0 {
		stored = int64(*given)
	}

	if stored == 0 {
		log.Fatal("-seed or -stored is needed")
	}

	if *pid != 0 {
		result["insertCpuMsPerTaskFull"] = insertCPU(ctx, tasks, *pid, int(stored), *cpuBatches)
		log.Printf("store CPU per insert with %d stored: %.3f ms", stored, result["insertCpuMsPerTaskFull"])
		stored += int64(*cpuBatches * batch)
	}

	result["stored"] = stored

	// The newest tasks are the last ones inserted; the keyset page starts 90 % down the list.
	deep := int(stored / 10)
	keyset := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: createdAt(deep)}}}},
		bson.D{{Key: "created_at", Value: createdAt(deep)}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: taskID(deep)}}}},
	}}}

	if *rounds == 0 {
		printJSON(result)
		return
	}

	result["newestPage"] = timeReads(ctx, tasks, bson.D{}, *rounds)
	log.Printf("newest page: %v", result["newestPage"])
	result["deepKeysetPage"] = timeReads(ctx, tasks, keyset, *rounds)
	log.Printf("deep keyset page: %v", result["deepKeysetPage"])

	printJSON(result)
}

func printJSON(result map[string]any) {
	out, _ := json.MarshalIndent(result, "", "  ")
	fmt.Println(string(out))
}

// taskID returns the _id of the i-th task: a UUID whose order is not the tasks' time order.
func taskID(i int) string {
	x := uint64(i)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	x ^= x >> 31

	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", x>>32, x>>16&0xffff, x&0xfff, i>>36&0xfff, i&0xffffffffffff)
}

// createdAt returns the creation time of the i-th task: two tasks to a millisecond, a few apart.
func createdAt(i int) time.Time {
	return start.Add(time.Duration(i/2) * 7 * time.Millisecond)
}

func insert(ctx context.Context, tasks *mongo.Collection, from, n int) {
	docs := make([]any, n)

	for j := range docs {
		i := from + j
		docs[j] = bson.D{
			{Key: "_id", Value: taskID(i)},
			{Key: "title", Value: "task " + strconv.Itoa(i)},
			{Key: "source", Value: "bench"},
			{Key: "created_at", Value: createdAt(i)},
			{Key: "status", Value: "processed"},
			{Key: "processed_by", Value: "worker-go"},
			{Key: "processed_at", Value: createdAt(i).Add(3 * time.Millisecond)},
			{Key: "node_id", Value: "bench-node"},
		}
	}

	if _, err := tasks.InsertMany(ctx, docs); err != nil {
		log.Fatal(err)
	}
}

// insertCPU inserts batches of tasks from the i-th on, and returns the store's CPU milliseconds per task.
func insertCPU(ctx context.Context, tasks *mongo.Collection, pid, from, batches int) float64 {
	before := cpuMs(pid)

	for b := range batches {
		insert(ctx, tasks, from+b*batch, batch)
	}

	return (cpuMs(pid) - before) / float64(batches*batch)
}

// cpuMs returns the user and system CPU time of a process, in milliseconds (0 without a pid).
func cpuMs(pid int) float64 {
	if pid == 0 {
		return 0
	}

	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatal(err)
	}

	// The fields after the command's name (which may hold spaces) in parentheses; utime and stime
	// are the 14th and 15th of the whole line, in clock ticks of 10 ms.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)

	return (utime + stime) * 10
}

// timeReads reads a page of 20 (and one more, as the list asks) the given number of times, and
// returns its p50 and p99 in milliseconds.
func timeReads(ctx context.Context, tasks *mongo.Collection, filter bson.D, rounds int) map[string]any {
	opts := options.Find().SetSort(listIndex).SetLimit(21)
	took := make([]float64, rounds)

	for r := range took {
		began := time.Now()

		cur, err := tasks.Find(ctx, filter, opts)
		if err != nil {
			log.Fatal(err)
		}

		var page []bson.Raw
		if err := cur.All(ctx, &page); err != nil {
			log.Fatal(err)
		}

		if len(page) != 21 {
			log.Fatalf("a page of %d tasks", len(page))
		}

		took[r] = float64(time.Since(began).Microseconds()) / 1000
	}

	slices.Sort(took)

	return map[string]any{
		"rounds": rounds,
		"p50Ms":  took[len(took)/2],
		"p99Ms":  took[min(len(took)-1, len(took)*99/100)],
		"maxMs":  took[len(took)-1],
	}
}
