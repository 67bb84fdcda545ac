// The read phase of `npm run bench` (BENCH_PHASES=reads): list and get latency as the store grows,
// in the shapes moleculer-db asked before and the ones the tasks service asks now, and a flood
// of slow lists against the running stack while tasks are posted and read by id.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { MongoClient, type Collection } from "mongodb";
import TasksService from "../services/tasks.service";
import { createDbServiceMixin } from "../mixins/db.mixin";
import { config } from "../lib/config";
import { encodeCursor, readBudgetMs } from "../lib/store/task-reads";
import { pidOf } from "../scripts/stack-control";
import { resetStore } from "./cost";

/** Its own database, dropped afterwards: the seeded millions never meet the nodes' data. */
const READS_DB = "notes_tasks_bench_reads";
const SIZES = (process.env.BENCH_READ_SIZES ?? "10000,100000,1000000").split(",").map(Number);
const FLOOD_STORED = Number(process.env.BENCH_FLOOD_TASKS ?? 200_000);
const FLOOD_SECONDS = Number(process.env.BENCH_FLOOD_SECONDS ?? 20);
/** The old shapes take a minute each at 1M documents on FerretDB; past this they count as timed out. */
const OLD_SHAPE_CAP_MS = 30_000;
const SAMPLES = 5;
const SEED_BATCH = 5_000;
const BUDGET_MS = readBudgetMs(config.requestTimeoutMs);

interface Timing {
	/** Median of the samples in ms, or null when every sample ran out of time. */
	medianMs: number | null;
	maxMs: number;
	samples: number;
	errors: string[];
}

type TaskDoc = { _id: string; created_at: Date } & Record<string, unknown>;

const log = (message: string) => console.log(`[bench] reads: ${message}`);

/** Runs `read` SAMPLES times (once if it is slow); errors such as MaxTimeMSExpired are kept by name. */
async function timed(read: () => Promise<unknown>): Promise<Timing> {
	const latencies: number[] = [];
	const errors: string[] = [];
	for (let i = 0; i < SAMPLES; i++) {
		const started = performance.now();
		try {
			await read();
			latencies.push(performance.now() - started);
		} catch (err) {
			errors.push((err as { codeName?: string; name: string }).codeName ?? (err as Error).name);
		}
		if (performance.now() - started > 2_000) break;
	}
	const sorted = [...latencies].sort((a, b) => a - b);
	return {
		medianMs: sorted.length ? round(sorted[Math.floor(sorted.length / 2)]) : null,
		maxMs: round(Math.max(0, ...latencies)),
		samples: latencies.length + errors.length,
		errors,
	};
}

function seedDocument(createdAt: Date): TaskDoc {
	return {
		_id: randomUUID(),
		title: "seeded for the read benchmark",
		source: "go",
		created_at: createdAt,
		status: "processed",
		processed_by: "worker-go",
		processed_at: createdAt,
		node_id: "bench-reads",
	};
}

/** Inserts documents a millisecond apart until the collection holds `size`; returns a sample of their ids. */
async function seedTo(collection: Collection<TaskDoc>, size: number): Promise<string[]> {
	const ids: string[] = [];
	let stored = await collection.estimatedDocumentCount();
	const started = performance.now();
	while (stored < size) {
		const batch = Array.from({ length: Math.min(SEED_BATCH, size - stored) }, (_, i) => seedDocument(new Date(Date.UTC(2026, 0, 1) + stored + i)));
		await collection.insertMany(batch, { ordered: false });
		ids.push(batch[Math.floor(batch.length / 2)]._id);
		stored += batch.length;
	}
	if (ids.length) log(`seeded ${READS_DB}.${collection.collectionName} to ${size} in ${round((performance.now() - started) / 1000)} s`);
	return ids;
}

/** The tasks service exactly as a node runs it, on the benchmark's database. */
async function startTasksService(mongoUri: string, dbName: string): Promise<ServiceBroker> {
	const broker = new ServiceBroker({ nodeID: "bench-reads", logger: false, requestTimeout: config.requestTimeoutMs });
	broker.createService({ ...TasksService, mixins: [createDbServiceMixin("tasks", { ...config, mongoUri, dbName })] } as ServiceSchema);
	await broker.start();
	return broker;
}

/** Latency of each read shape at each size, oldest code path first. */
export async function readLatencies(mongoUri: string) {
	const client = await MongoClient.connect(mongoUri);
	const collection = client.db(READS_DB).collection<TaskDoc>("tasks");
	const broker = await startTasksService(mongoUri, READS_DB);
	const old = { maxTimeMS: OLD_SHAPE_CAP_MS };
	const results = [];
	try {
		for (const size of SIZES) {
			const ids = await seedTo(collection, size);
			// The newest seeded task: most gets follow a recent POST, and FerretDB finds it last.
			const someId = ids.at(-1) ?? (await collection.findOne({}))?._id ?? "";
			const deep = await collection.find({}, { limit: 1, skip: Math.floor(size / 2) }).toArray();
			const deepCursor = encodeCursor({ createdAt: deep[0].created_at, id: deep[0]._id });
			log(`${size} stored: the shapes moleculer-db sent (capped at ${OLD_SHAPE_CAP_MS} ms)`);
			const before = {
				list: await timed(() =>
					Promise.all([collection.find({}, { sort: { created_at: -1 }, limit: 20, ...old }).toArray(), collection.countDocuments({}, old)]),
				),
				get: await timed(() => collection.find({ _id: { $in: [someId] } }, old).toArray()),
			};
			log(`${size} stored: the tasks service's shapes (maxTimeMS ${BUDGET_MS})`);
			const after = {
				listFirstPage: await timed(() => broker.call("tasks.list", { pageSize: 20 })),
				listAfterCursor: await timed(() => broker.call("tasks.list", { pageSize: 20, after: deepCursor })),
				getStored: await timed(() => broker.call("tasks.get", { id: someId })),
				getUnknown: await timed(() =>
					broker.call("tasks.get", { id: randomUUID() }).catch(err => {
						if (err.code !== 404) throw err;
					}),
				),
			};
			results.push({ stored: size, before, after });
		}
	} finally {
		await broker.stop();
		await client.db(READS_DB).dropDatabase();
		await client.close();
	}
	return results;
}

/** Latencies of a closed loop of `connections` clients, each sending `request` until `until`. */
async function closedLoop(connections: number, until: () => boolean, request: () => Promise<Response>, pauseMs = 0) {
	const latencies: number[] = [];
	const statuses: Record<string, number> = {};
	await Promise.all(
		Array.from({ length: connections }, async () => {
			while (!until()) {
				const started = performance.now();
				const status = await request().then(
					res => res.arrayBuffer().then(() => String(res.status)),
					(err: Error) => err.name,
				);
				latencies.push(performance.now() - started);
				statuses[status] = (statuses[status] ?? 0) + 1;
				if (pauseMs) await sleep(pauseMs);
			}
		}),
	);
	latencies.sort((a, b) => a - b);
	const at = (q: number) => round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0);
	return { requests: latencies.length, p50Ms: at(0.5), p99Ms: at(0.99), statuses };
}

function cpuMs(pid: number): number {
	const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
	const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Seconds until the store's CPU stays under 10% of a core for two seconds in a row. */
async function secondsUntilIdle(pid: number, limitSeconds = 120): Promise<{ seconds: number; cpuPercentBySecond: number[] }> {
	const started = performance.now();
	const bySecond: number[] = [];
	let quiet = 0;
	while (quiet < 2 && bySecond.length < limitSeconds) {
		const before = cpuMs(pid);
		await sleep(1000);
		const percent = Math.round((cpuMs(pid) - before) / 10);
		bySecond.push(percent);
		quiet = percent < 10 ? quiet + 1 : 0;
	}
	return { seconds: round((performance.now() - started) / 1000 - quiet), cpuPercentBySecond: bySecond };
}

/**
 * POST /tasks and GET /tasks/:id through Nginx, first alone, then beside a flood of lists whose
 * clients give up after 2 s, with `stored` tasks in the nodes' database (`nodesDb`).
 */
export async function listFlood(nginx: string, mongoUri: string, nodesDb: string) {
	// The phases before leave more tasks than that in the nodes' database, and seeding none gave no ids to get.
	await resetStore(nodesDb);
	const client = await MongoClient.connect(mongoUri);
	const ids = await seedTo(client.db(nodesDb).collection<TaskDoc>("tasks"), FLOOD_STORED);
	await client.close();
	const storePid = await pidOf("ferretdb");
	const pickId = () => ids[Math.floor(Math.random() * ids.length)];
	const post = () => fetch(`${nginx}/flask/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"title":"benchmark task"}' });
	const get = () => fetch(`${nginx}/go/tasks/${pickId()}`, { signal: AbortSignal.timeout(10_000) });
	const list = (gateway: string) => () => fetch(`${nginx}/${gateway}/tasks?pageSize=20`, { signal: AbortSignal.timeout(2_000) });

	const run = async (flood: boolean) => {
		const end = performance.now() + FLOOD_SECONDS * 1000;
		const over = () => performance.now() > end;
		const [posts, gets, ...lists] = await Promise.all([
			closedLoop(16, over, post),
			closedLoop(2, over, get),
			...(flood ? [closedLoop(16, over, list("flask"), 200), closedLoop(16, over, list("go"), 200)] : []),
		]);
		return { posts, gets, lists, storeIdle: await secondsUntilIdle(storePid) };
	};
	log(`flood: ${FLOOD_SECONDS} s of posts and gets alone, at ${FLOOD_STORED} stored tasks`);
	const alone = await run(false);
	log(`flood: the same beside 32 clients listing (each gives up after 2 s)`);
	const flooded = await run(true);
	return {
		stored: FLOOD_STORED,
		alone,
		flooded,
		postP99Ratio: round(flooded.posts.p99Ms / alone.posts.p99Ms),
		getP99Ratio: round(flooded.gets.p99Ms / alone.gets.p99Ms),
	};
}

function round(value: number, digits = 1): number {
	return Math.round(value * 10 ** digits) / 10 ** digits;
}
