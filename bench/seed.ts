// Fills a store's `tasks` collection with processed tasks, straight through the driver in large
// unordered batches: a million in minutes, where posting them through the cluster takes an hour.
//
//   npx tsx bench/seed.ts <tasks> [mongo URI] [database] [--peer-shape]
//   (defaults: mongodb://127.0.0.1:27017/, mydb; --peer-shape: the Go peer's documents, for its bench)
//
// Each document is one the workers would store: built by lib/task.ts's own functions and checked
// by the rule `tasks.storeProcessed` checks with. Their `created_at` lie in the past, a few
// hundred ms apart, some in the same millisecond, so that whatever the cluster stores after
// them is newer, and the list's tie-break on `_id` is exercised.
import Validator from "fastest-validator";
import { MongoClient, type Collection } from "mongodb";
import { LIST_INDEX } from "../lib/store/task-reads";
import { newTask, processedTaskRule, stampProcessed, toDocument, type TaskDocument } from "../lib/task";

const BATCH = 10_000;
/** Batches in flight at once: the next is built and sent while the store writes the last. */
const IN_FLIGHT = 2;
const STAMPS = [
	{ processedBy: "worker-py", nodeID: "worker-py-seeded" },
	{ processedBy: "worker-go", nodeID: "worker-go-seeded" },
];
const check = new Validator({ useNewCustomCheckerFunction: true }).compile({ task: processedTaskRule });

/** Where a seeded task sits in the list: a cursor position to read from. */
export interface SeededPosition {
	createdAt: Date;
	id: string;
}

/** Every 1,000th seeded task, kept beside the tasks: a later run reads from the same positions. */
const SAMPLES_COLLECTION = "seed_samples";

export interface SeedResult {
	/** Tasks in the collection afterwards. */
	stored: number;
	inserted: number;
	seconds: number;
	/** Every 1,000th task seeded into the collection, by this run or an earlier one: ids to get and positions to page from. */
	samples: SeededPosition[];
}

/** One seeded document: the n-th, created at `createdAt`. */
export type SeededDocument<T> = (n: number, createdAt: Date) => T & { _id: string };

/** The Go peer's document for the same task (its worker's shape: `created_at` a string, `worker`). */
export function peerSeededDocument(n: number, createdAt: Date) {
	const { node_id, created_at, ...rest } = seededDocument(n, createdAt);
	return { ...rest, created_at: created_at.toISOString().replace("Z", "000000Z"), worker: node_id };
}

/** A document as the cluster's workers store it. */
export function seededDocument(n: number, createdAt: Date): TaskDocument {
	const queued = { ...newTask(`seeded task ${n}`, n % 2 ? "go" : "flask"), created_at: createdAt.toISOString() };
	const processed = stampProcessed(queued, STAMPS[n % 2], new Date(createdAt.getTime() + 5 + (n % 40)).toISOString());
	if (check({ task: processed }) !== true) throw new Error(`seeded task ${n} is not one a worker would store`);
	return toDocument(processed);
}

/**
 * Adds tasks until the collection holds `size`, all older than `before`; the newest added is
 * about a minute before it. Leaves the list index in place, as a node creates it.
 */
export async function seedTasks<T extends { _id: string }>(
	collection: Collection,
	size: number,
	document: SeededDocument<T> = seededDocument as unknown as SeededDocument<T>,
	before = new Date(),
): Promise<SeedResult> {
	const started = performance.now();
	await collection.createIndex(LIST_INDEX.key, { name: LIST_INDEX.name });
	// What earlier runs seeded, from their record: FerretDB counts by reading every document.
	const sampled = collection.db.collection<{ _id: string; created_at: Date; seeded: number }>(SAMPLES_COLLECTION);
	const present = (await sampled.find({}).toArray()).reduce((sum, sample) => sum + sample.seeded, 0);
	const toInsert = Math.max(0, size - present);
	// Oldest first, ending a minute before `before`; below anything already seeded.
	const [oldest] = await sampled.find({}, { sort: { created_at: 1 }, limit: 1 }).toArray();
	const end = Math.min(before.getTime() - 60_000, (oldest?.created_at.getTime() ?? Infinity) - 1000);
	let at = end - toInsert * 250;
	const samples: { _id: string; created_at: Date; seeded: number }[] = [];
	const pending = new Set<Promise<unknown>>();
	for (let n = 0; n < toInsert; n += BATCH) {
		const documents = Array.from({ length: Math.min(BATCH, toInsert - n) }, (_, i) => {
			// 0 to 499 ms apart: one in 500 shares the millisecond of the one before.
			at += (n + i) % 500;
			const seeded = document(n + i, new Date(at));
			if ((n + i) % 1000 === 0) samples.push({ _id: seeded._id, created_at: new Date(at), seeded: Math.min(1000, toInsert - n - i) });
			return seeded;
		});
		const write = collection.insertMany(documents as never, { ordered: false }).finally(() => pending.delete(write));
		pending.add(write);
		if (pending.size >= IN_FLIGHT) await Promise.race(pending);
	}
	await Promise.all(pending);
	if (samples.length) await sampled.insertMany(samples);
	const positions = (await sampled.find({}, { sort: { created_at: 1 } }).toArray()).map(sample => ({ createdAt: sample.created_at, id: sample._id }));
	return { stored: present + toInsert, inserted: toInsert, seconds: Math.round((performance.now() - started) / 100) / 10, samples: positions };
}

async function main() {
	const peerShape = process.argv.includes("--peer-shape");
	const [tasks, uri = "mongodb://127.0.0.1:27017/", db = "mydb"] = process.argv.slice(2).filter(arg => arg !== "--peer-shape");
	const size = Number(tasks);
	if (!Number.isSafeInteger(size) || size < 0) throw new Error("usage: tsx bench/seed.ts <tasks> [mongo URI] [database]");
	const client = await MongoClient.connect(uri);
	try {
		const collection = client.db(db).collection("tasks");
		const result = await seedTasks(collection, size, peerShape ? peerSeededDocument : seededDocument);
		console.log(`[seed] ${db}.tasks holds ${result.stored} tasks: ${result.inserted} added in ${result.seconds} s`);
	} finally {
		await client.close();
	}
}

if (require.main === module) {
	main().catch(err => {
		console.error(err);
		process.exit(1);
	});
}
