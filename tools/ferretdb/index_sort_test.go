package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// The task list's index and sort (lib/store/task-reads.ts LIST_INDEX).
var (
	listIndex   = bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}
	newestFirst = bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}
	oldestFirst = bson.D{{Key: "created_at", Value: 1}, {Key: "_id", Value: 1}}
)

const listIndexName = "created_at_-1__id_-1"

var base = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// tasks returns n task documents, three to a millisecond, whose _id order is not their time order.
func tasks(n int, id func(i int) any) []any {
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.D{
			{Key: "_id", Value: id(i)},
			{Key: "title", Value: fmt.Sprintf("task %d", i)},
			{Key: "status", Value: []string{"queued", "processed"}[i%2]},
			{Key: "created_at", Value: base.Add(time.Duration(i/3) * time.Millisecond)},
		}
	}

	return docs
}

func uuidLike(i int) any {
	return fmt.Sprintf("%08x-4000-8000-%012x", (i*2654435761)%(1<<32), i)
}

func objectID(i int) any {
	var id primitive.ObjectID
	copy(id[:], fmt.Sprintf("%012d", (i*7919)%100003))
	return id
}

// databases counts the databases that tests made, to name the next one.
var databases int

// store puts docs into two collections of a new database: "indexed", with the list's index
// (created when half of them are in, so that both index builds and index upkeep are covered), and
// "plain", without it, whose finds take FerretDB's in-memory path.
func store(t *testing.T, docs []any) (indexed, plain *mongo.Collection) {
	t.Helper()

	ctx := context.Background()
	databases++
	db := client.Database(fmt.Sprintf("test%d", databases))
	t.Cleanup(func() { _ = db.Drop(context.Background()) })

	indexed, plain = db.Collection("indexed"), db.Collection("plain")
	half := len(docs) / 2

	if _, err := indexed.InsertMany(ctx, docs[:half]); err != nil {
		t.Fatal(err)
	}

	index := mongo.IndexModel{Keys: listIndex, Options: options.Index().SetName(listIndexName)}
	if _, err := indexed.Indexes().CreateOne(ctx, index); err != nil {
		t.Fatal(err)
	}

	if _, err := indexed.InsertMany(ctx, docs[half:]); err != nil {
		t.Fatal(err)
	}

	if _, err := plain.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}

	return indexed, plain
}

type read struct {
	name        string
	filter      bson.D
	sort        bson.D
	skip, limit int64
}

// reads returns the list's reads (first pages, keyset pages at several depths, both directions),
// and a few that the index can serve only in part.
func reads(docs []any) []read {
	var rs []read

	for _, depth := range []int{0, 1, 2, len(docs) / 2, len(docs) - 2} {
		at := docs[depth].(bson.D)
		id, createdAt := at[0].Value, at[3].Value

		before := bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: createdAt}}}},
			bson.D{{Key: "created_at", Value: createdAt}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: id}}}},
		}}}
		after := bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "created_at", Value: bson.D{{Key: "$gt", Value: createdAt}}}},
			bson.D{{Key: "created_at", Value: createdAt}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: id}}}},
		}}}

		rs = append(rs,
			read{fmt.Sprintf("keyset before %d", depth), before, newestFirst, 0, 21},
			read{fmt.Sprintf("keyset after %d", depth), after, oldestFirst, 0, 21},
			read{fmt.Sprintf("created_at $lt %d", depth), bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: createdAt}}}}, newestFirst, 0, 5},
			read{fmt.Sprintf("created_at $gte %d", depth), bson.D{{Key: "created_at", Value: bson.D{{Key: "$gte", Value: createdAt}}}}, oldestFirst, 0, 5},
			read{fmt.Sprintf("created_at equal %d", depth), bson.D{{Key: "created_at", Value: createdAt}}, newestFirst, 0, 2},
			read{fmt.Sprintf("_id equal %d", depth), bson.D{{Key: "_id", Value: id}}, newestFirst, 0, 21},
			read{fmt.Sprintf("keyset and status %d", depth), append(bson.D{{Key: "status", Value: "queued"}}, before...), newestFirst, 0, 7},
		)
	}

	return append(rs,
		read{"newest", bson.D{}, newestFirst, 0, 21},
		read{"oldest", bson.D{}, oldestFirst, 0, 21},
		read{"second page", bson.D{}, newestFirst, 21, 21},
		read{"all", bson.D{}, oldestFirst, 0, int64(len(docs) + 10)},
		read{"status", bson.D{{Key: "status", Value: "processed"}}, newestFirst, 3, 4},
		read{"before the first millisecond", bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: base.AddDate(-30, 0, 0)}}}}, newestFirst, 0, 5},
	)
}

// find returns the documents of a read, in order, as the server sends them.
func find(t *testing.T, coll *mongo.Collection, r read) []bson.Raw {
	t.Helper()

	opts := options.Find().SetSort(r.sort).SetSkip(r.skip).SetLimit(r.limit)

	cur, err := coll.Find(context.Background(), r.filter, opts)
	if err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}

	var docs []bson.Raw
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}

	return docs
}

type plan struct {
	steps         []string
	sortPushdown  bool
	limitPushdown bool
}

// explain returns SQLite's plan for a read (EXPLAIN QUERY PLAN, through FerretDB's explain).
func explain(t *testing.T, coll *mongo.Collection, r read) plan {
	t.Helper()

	cmd := bson.D{{Key: "explain", Value: bson.D{
		{Key: "find", Value: coll.Name()},
		{Key: "filter", Value: r.filter},
		{Key: "sort", Value: r.sort},
		{Key: "skip", Value: r.skip},
		{Key: "limit", Value: r.limit},
	}}}

	var res struct {
		QueryPlanner struct {
			Plan []string `bson:"Plan"`
		} `bson:"queryPlanner"`
		SortPushdown  bool `bson:"sortPushdown"`
		LimitPushdown bool `bson:"limitPushdown"`
	}
	if err := coll.Database().RunCommand(context.Background(), cmd).Decode(&res); err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}

	return plan{res.QueryPlanner.Plan, res.SortPushdown, res.LimitPushdown}
}

// assertSameResults asserts that every read answers from the index as the in-memory path does.
func assertSameResults(t *testing.T, indexed, plain *mongo.Collection, rs []read) {
	t.Helper()

	for _, r := range rs {
		got, want := find(t, indexed, r), find(t, plain, r)
		if len(got) != len(want) {
			t.Errorf("%s: %d documents from the index, %d in memory", r.name, len(got), len(want))
			continue
		}

		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: document %d is %s from the index, %s in memory", r.name, i, got[i], want[i])
				break
			}
		}
	}
}

// assertIndexWalk asserts that SQLite answers the read by walking the index (by its name): no sort
// of its own, no scan of the table.
func assertIndexWalk(t *testing.T, coll *mongo.Collection, r read, index string, limit bool) {
	t.Helper()

	p := explain(t, coll, r)
	steps := strings.Join(p.steps, "\n")

	if !p.sortPushdown || p.limitPushdown != limit {
		t.Errorf("%s: sortPushdown %v, limitPushdown %v (want %v):\n%s", r.name, p.sortPushdown, p.limitPushdown, limit, steps)
	}

	if !regexp.MustCompile(`USING INDEX \S+_` + regexp.QuoteMeta(index) + `\b`).MatchString(steps) {
		t.Errorf("%s: not served by the index %s:\n%s", r.name, index, steps)
	}

	if strings.Contains(steps, "TEMP B-TREE") {
		t.Errorf("%s: SQLite sorts:\n%s", r.name, steps)
	}

	if regexp.MustCompile(`(?m)detail=SCAN \S+\s*$`).MatchString(steps) {
		t.Errorf("%s: SQLite scans the table:\n%s", r.name, steps)
	}

	// A bound on the index's first field starts the walk at the bound.
	if ranged(r) && !strings.Contains(steps, "detail=SEARCH") {
		t.Errorf("%s: SQLite walks the index from its start:\n%s", r.name, steps)
	}
}

// ranged tells whether a read bounds created_at by a value of the stored dates' class.
func ranged(r read) bool {
	return strings.HasPrefix(r.name, "keyset") || strings.HasPrefix(r.name, "created_at") || strings.HasPrefix(r.name, "_id equal")
}

func TestListReadsWalkTheIndex(t *testing.T) {
	for name, id := range map[string]func(int) any{"string ids": uuidLike, "ObjectIDs": objectID} {
		t.Run(name, func(t *testing.T) {
			docs := tasks(300, id)
			indexed, plain := store(t, docs)
			rs := reads(docs)

			assertSameResults(t, indexed, plain, rs)

			for _, r := range rs {
				// A filter the index serves in full lets SQLite stop at the limit; one it serves
				// in part (status) is narrowed by FerretDB as SQLite walks the index.
				exact := !strings.HasPrefix(r.name, "keyset and status") && r.name != "status" && r.name != "before the first millisecond"

				// SQLite finds one _id by its own index.
				index := listIndexName
				if strings.HasPrefix(r.name, "_id equal") {
					index = "_id_"
				}

				assertIndexWalk(t, indexed, r, index, exact)
			}
		})
	}
}

// Each odd document makes the JSON text order of the index differ from BSON's order (or leaves a
// field out), so that reads must take the in-memory path, and answer as it does.
func TestListReadsFallBackOnValuesThatSortOtherwise(t *testing.T) {
	odd := map[string]bson.D{
		"created_at a string":        {{Key: "_id", Value: "odd"}, {Key: "created_at", Value: "2026-12-04T12:00:00.050Z"}},
		"created_at a number":        {{Key: "_id", Value: "odd"}, {Key: "created_at", Value: base.UnixMilli() + 50}},
		"created_at a double":        {{Key: "_id", Value: "odd"}, {Key: "created_at", Value: float64(base.UnixMilli()) + 50.5}},
		"created_at null":            {{Key: "_id", Value: "odd"}, {Key: "created_at", Value: nil}},
		"created_at missing":         {{Key: "_id", Value: "odd"}},
		"created_at an array":        {{Key: "_id", Value: "odd"}, {Key: "created_at", Value: bson.A{base.Add(50 * time.Millisecond)}}},
		"created_at in 2001":         {{Key: "_id", Value: "odd"}, {Key: "created_at", Value: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}},
		"created_at before 1970":     {{Key: "_id", Value: "odd"}, {Key: "created_at", Value: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)}},
		"_id with an exclamation":    {{Key: "_id", Value: uuidLike(6).(string) + "!"}, {Key: "created_at", Value: base.Add(2 * time.Millisecond)}},
		"_id with a space":           {{Key: "_id", Value: uuidLike(6).(string) + " "}, {Key: "created_at", Value: base.Add(2 * time.Millisecond)}},
		"_id with a quote":           {{Key: "_id", Value: `a"b`}, {Key: "created_at", Value: base.Add(2 * time.Millisecond)}},
		"_id with an HTML character": {{Key: "_id", Value: "a<b"}, {Key: "created_at", Value: base.Add(2 * time.Millisecond)}},
		"_id a number":               {{Key: "_id", Value: int32(7)}, {Key: "created_at", Value: base.Add(2 * time.Millisecond)}},
		"_id an ObjectID":            {{Key: "_id", Value: objectID(7)}, {Key: "created_at", Value: base.Add(2 * time.Millisecond)}},
	}

	for name, doc := range odd {
		t.Run(name, func(t *testing.T) {
			docs := append(tasks(60, uuidLike), doc)
			indexed, plain := store(t, docs)
			rs := reads(docs[:60])

			assertSameResults(t, indexed, plain, rs)

			for _, r := range rs {
				if explain(t, indexed, r).sortPushdown {
					t.Errorf("%s: served by the index", r.name)
				}
			}
		})
	}
}

// Bounds the index cannot compare as BSON does are left to FerretDB's filter, while SQLite still
// walks the index; other sorts are not served by it at all.
func TestListReadsWithOtherBoundsAndSorts(t *testing.T) {
	docs := tasks(90, uuidLike)
	indexed, plain := store(t, docs)

	mixedSort := bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: 1}}
	partial := []read{
		{"bound in 2001", bson.D{{Key: "created_at", Value: bson.D{{Key: "$gt", Value: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}}}}, newestFirst, 0, 5},
		{"bound a string", bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: "2030"}}}}, newestFirst, 0, 5},
		{"_id bound with a space", bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: "8 "}}}}, newestFirst, 0, 5},
		{"$in", bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{uuidLike(3), uuidLike(4)}}}}}, oldestFirst, 0, 5},
	}
	other := []read{
		{"mixed directions", bson.D{}, mixedSort, 0, 5},
		{"one field", bson.D{}, bson.D{{Key: "created_at", Value: -1}}, 0, 5},
		{"no limit", bson.D{}, newestFirst, 0, 0},
	}

	assertSameResults(t, indexed, plain, append(partial, other...))

	for _, r := range partial {
		assertIndexWalk(t, indexed, r, listIndexName, false)
	}

	for _, r := range other {
		if explain(t, indexed, r).sortPushdown {
			t.Errorf("%s: served by the index", r.name)
		}
	}
}
