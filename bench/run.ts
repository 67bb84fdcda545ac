// `npm run bench`: the cluster's speed on the local stack, each figure beside the machine's own
// ceiling measured in the same run (these machines are noisy; ratios travel, raw numbers do not).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import amqp from "amqplib";
import { MongoClient } from "mongodb";
import { amqpPublish, nginxToBareNode, storeInsert } from "./ceilings";
import { postTasks, type LoadFigures } from "./load";
import { ROOT, RssSampler, setWorkerCounts, stackUp, useDatabase } from "./stack-control";

const NGINX = "http://127.0.0.1:8080";
const RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F";
const MONGO_URI = "mongodb://127.0.0.1:27017/";
const QUEUE = "task_queue";
/** The nodes write here during the run; it is dropped afterwards. */
const BENCH_DB = "notes_tasks_bench";
const INGEST = { connections: 64, durationSeconds: Number(process.env.BENCH_SECONDS ?? 15) };
const END_TO_END_TASKS = Number(process.env.BENCH_TASKS ?? 50_000);
const BACKLOG_TASKS = Number(process.env.BENCH_BACKLOG ?? 100_000);
const DEFAULT_WORKERS = { py: 2, go: 2 };
const WORKER_CURVE: [number, number][] = [[1, 0], [1, 1], [2, 2]];
const OUT = process.env.BENCH_OUT ?? path.join(ROOT, "bench/results/latest.json");

interface EndToEnd {
	workers: number;
	tasks: number;
	tasksPerSecond: number;
	postingSeconds: number;
	totalSeconds: number;
	non2xx: number;
}

const log = (message: string) => console.log(`[bench] ${message}`);

async function queueDepth(): Promise<number> {
	const connection = await amqp.connect(RABBIT_URL);
	try {
		const channel = await connection.createChannel();
		return (await channel.checkQueue(QUEUE)).messageCount;
	} finally {
		await connection.close();
	}
}

async function storedCount(): Promise<number> {
	const client = await MongoClient.connect(MONGO_URI);
	try {
		return await client.db(BENCH_DB).collection("tasks").estimatedDocumentCount();
	} finally {
		await client.close();
	}
}

async function dropBenchDatabase(): Promise<void> {
	const client = await MongoClient.connect(MONGO_URI);
	try {
		await client.db(BENCH_DB).dropDatabase();
	} finally {
		await client.close();
	}
}

/** Waits until no task waits in the queue and the store holds `expected` documents. */
async function waitUntilStored(expected: number): Promise<void> {
	while ((await queueDepth()) > 0) await sleep(100);
	while ((await storedCount()) < expected) await sleep(250);
}

/** Posts `tasks` tasks through both gateways at once and times them until all are stored. */
async function endToEnd(workers: { py: number; go: number }, tasks: number): Promise<EndToEnd> {
	await setWorkerCounts(workers.py, workers.go);
	const before = await storedCount();
	const started = performance.now();
	const half = { connections: 32, amount: tasks / 2 };
	const posted = await Promise.all([postTasks(`${NGINX}/flask/tasks`, half), postTasks(`${NGINX}/go/tasks`, half)]);
	const postingSeconds = (performance.now() - started) / 1000;
	const accepted = posted.reduce((sum, figures) => sum + figures.requests - figures.non2xx, 0);
	while ((await queueDepth()) > 0) await sleep(50);
	const totalSeconds = (performance.now() - started) / 1000;
	await waitUntilStored(before + accepted);
	return {
		workers: workers.py + workers.go,
		tasks: accepted,
		tasksPerSecond: Math.round(accepted / totalSeconds),
		postingSeconds: round(postingSeconds),
		totalSeconds: round(totalSeconds),
		non2xx: posted.reduce((sum, figures) => sum + figures.non2xx, 0),
	};
}

/** Ingest with the workers stopped while the backlog grows, then the drain once they return. */
async function backlog(sampler: RssSampler) {
	await setWorkerCounts(0, 0);
	const rssBefore = sampler.current("api-flask");
	const ingest = await postTasks(`${NGINX}/flask/tasks`, { connections: INGEST.connections, amount: BACKLOG_TASKS });
	const rssAfter = sampler.current("api-flask");
	const waiting = await queueDepth();
	const before = await storedCount();
	const started = performance.now();
	await setWorkerCounts(DEFAULT_WORKERS.py, DEFAULT_WORKERS.go);
	while ((await queueDepth()) > 0) await sleep(50);
	const drainSeconds = (performance.now() - started) / 1000;
	await waitUntilStored(before + waiting);
	return {
		ingest,
		waiting,
		gatewayRssMb: { before: rssBefore, after: rssAfter },
		drainTasksPerSecond: Math.round(waiting / drainSeconds),
		drainSeconds: round(drainSeconds),
	};
}

function round(value: number, digits = 2): number {
	return Math.round(value * 10 ** digits) / 10 ** digits;
}

function ratio(value: number, ceiling: number): string {
	return `${((value / ceiling) * 100).toFixed(0)}%`;
}

async function main() {
	stackUp();
	await setWorkerCounts(DEFAULT_WORKERS.py, DEFAULT_WORKERS.go);
	await waitUntilStored(0);
	await dropBenchDatabase();
	useDatabase(BENCH_DB);
	try {
		await measure();
	} finally {
		await setWorkerCounts(DEFAULT_WORKERS.py, DEFAULT_WORKERS.go);
		await waitUntilStored(0);
		useDatabase(null);
		await dropBenchDatabase();
	}
}

async function measure() {
	const sampler = new RssSampler();
	sampler.start();

	log("ceiling: Nginx in front of a bare Node server");
	const httpCeiling = await nginxToBareNode(INGEST);
	log("ceiling: raw amqplib publishing with pipelined confirms");
	const publishCeiling = await amqpPublish(RABBIT_URL, 50_000);
	log("ceiling: unordered inserts of 200 documents into the store");
	const storeCeiling = await storeInsert(MONGO_URI, 20_000);

	log(`ingest: POST /flask/tasks through Nginx, ${INGEST.connections} connections, ${INGEST.durationSeconds} s`);
	const ingest: LoadFigures = await postTasks(`${NGINX}/flask/tasks`, INGEST);
	await waitUntilStored(0);

	const endToEndRuns: EndToEnd[] = [];
	for (const [py, go] of [[DEFAULT_WORKERS.py, DEFAULT_WORKERS.go], ...WORKER_CURVE]) {
		log(`end to end: ${END_TO_END_TASKS} tasks with ${py} worker-py + ${go} worker-go`);
		endToEndRuns.push(await endToEnd({ py, go }, END_TO_END_TASKS));
	}

	log(`backlog: ${BACKLOG_TASKS} tasks posted while the workers are stopped`);
	const backlogRun = await backlog(sampler);
	sampler.stop();

	const results = {
		measuredAt: new Date().toISOString(),
		ceilings: { nginxToBareNode: httpCeiling, amqpPublish: publishCeiling, storeInsert: storeCeiling },
		ingest,
		endToEnd: endToEndRuns,
		backlog: backlogRun,
		peakRssMb: Object.fromEntries([...sampler.peakMb].sort()),
	};
	mkdirSync(path.dirname(OUT), { recursive: true });
	writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);

	const defaultRun = endToEndRuns[0];
	console.table([
		{ figure: "ingest req/s (POST via Nginx)", value: ingest.requestsPerSecond, ceiling: httpCeiling.requestsPerSecond, ratio: ratio(ingest.requestsPerSecond, httpCeiling.requestsPerSecond), target: "≥ 33%" },
		{ figure: "ingest p50 / p99 ms", value: `${ingest.p50Ms} / ${ingest.p99Ms}`, ceiling: `${httpCeiling.p50Ms} / ${httpCeiling.p99Ms}`, ratio: "", target: "p99 ≤ 20" },
		{ figure: "ingest non-2xx / errors", value: `${ingest.non2xx} / ${ingest.errors}`, ceiling: "", ratio: "", target: "0" },
		{ figure: "publish ceiling msg/s (amqplib)", value: publishCeiling.messagesPerSecond, ceiling: "", ratio: "", target: "" },
		...endToEndRuns.map(run => ({
			figure: `end to end tasks/s, ${run.workers} worker(s)`,
			value: run.tasksPerSecond,
			ceiling: storeCeiling.documentsPerSecond,
			ratio: ratio(run.tasksPerSecond, storeCeiling.documentsPerSecond),
			target: run === defaultRun ? "≥ 5000" : "",
		})),
		{ figure: "backlog ingest req/s, workers stopped", value: backlogRun.ingest.requestsPerSecond, ceiling: httpCeiling.requestsPerSecond, ratio: ratio(backlogRun.ingest.requestsPerSecond, httpCeiling.requestsPerSecond), target: "holds" },
		{ figure: "api-flask RSS MB before / after backlog", value: `${backlogRun.gatewayRssMb.before} / ${backlogRun.gatewayRssMb.after}`, ceiling: "", ratio: "", target: "flat" },
		{ figure: `backlog drain tasks/s (${backlogRun.waiting} waiting)`, value: backlogRun.drainTasksPerSecond, ceiling: storeCeiling.documentsPerSecond, ratio: ratio(backlogRun.drainTasksPerSecond, storeCeiling.documentsPerSecond), target: "" },
		...[...sampler.peakMb].sort().map(([node, mb]) => ({ figure: `peak RSS MB ${node}`, value: mb, ceiling: "", ratio: "", target: "≤ 150" })),
	]);
	log(`figures written to ${path.relative(ROOT, OUT)}`);
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
