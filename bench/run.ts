// `npm run bench`: the cluster's speed on the local stack, each figure beside the machine's own
// ceiling measured in the same run (these machines are noisy; ratios travel, raw numbers do not).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import amqp from "amqplib";
import { MongoClient } from "mongodb";
import { amqpPublish, nginxToBareNode, storeInsert } from "./ceilings";
import { costDirect, costRatios, costThroughNginx, dropStore, FIRST_WARM_UP_TASKS, GoPeer, peerUnavailable, WARM_UP_TASKS, type CostRun } from "./cost";
import { postTasks, type LoadFigures } from "./load";
import { describeMachine } from "./machine";
import { queueTypes } from "./queue-types";
import { READ_ROUNDS, readsPhase } from "./reads";
import { COST_GOALS, goalText, REPORT_PAGE, RESULTS_FILE, writeReport } from "./report";
import { rabbitUrl, ROOT, RssSampler, setWorkerCounts, stackUp, useDatabase } from "../scripts/stack-control";

const NGINX = "http://127.0.0.1:8080";
const MONGO_URI = "mongodb://127.0.0.1:27017/";
const QUEUE = "task_queue";
/** The nodes write here during the run; it is dropped afterwards. */
const BENCH_DB = "notes_tasks_bench";
const INGEST = { connections: 64, durationSeconds: Number(process.env.BENCH_SECONDS ?? 15) };
const END_TO_END_TASKS = Number(process.env.BENCH_TASKS ?? 50_000);
const BACKLOG_TASKS = Number(process.env.BENCH_BACKLOG ?? 100_000);
/** The local stack's worker counts (scripts/stack.sh's defaults, or the same variables). */
const DEFAULT_WORKERS = { py: Number(process.env.WORKER_PY_COUNT ?? 1), go: Number(process.env.WORKER_GO_COUNT ?? 1) };
/** After the default: one worker process in all, then four. */
const WORKER_CURVE: [number, number][] = [
	[1, 0],
	[2, 2],
];
const COST_TASKS = Number(process.env.BENCH_COST_TASKS ?? 30_000);
/**
 * Rounds of the cluster's cost run and the peer's, back to back. This machine's speed changes in
 * steps from one half-minute to the next, FerretDB's and RabbitMQ's figures with the rest: each
 * round's ratios are taken within the round, and their median is the figure.
 */
const COST_ROUNDS = Number(process.env.BENCH_COST_ROUNDS ?? 5);
/**
 * Phases to run, e.g. BENCH_PHASES=cost for the CPU figures alone. By default all of them but
 * queue-types, which restarts the whole stack on other RabbitMQ setups and back.
 */
const PHASES = new Set((process.env.BENCH_PHASES ?? "ceilings,ingest,cost,end-to-end,backlog,reads").split(","));
const OUT = process.env.BENCH_OUT ? path.resolve(process.env.BENCH_OUT) : RESULTS_FILE;

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
	const connection = await amqp.connect(rabbitUrl());
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
	const rssBefore = await sampler.current("api-flask");
	const ingest = await postTasks(`${NGINX}/flask/tasks`, { connections: INGEST.connections, amount: BACKLOG_TASKS });
	const rssAfter = await sampler.current("api-flask");
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
	await dropStore(BENCH_DB);
	await useDatabase(BENCH_DB);
	try {
		await measure();
	} finally {
		await setWorkerCounts(DEFAULT_WORKERS.py, DEFAULT_WORKERS.go);
		await waitUntilStored(0);
		await useDatabase(null);
		await dropStore(BENCH_DB);
	}
}

interface CostRound {
	cluster: CostRun;
	peer?: CostRun;
	ratiosToPeer?: Record<string, number>;
}

interface CostPhase {
	/** Tasks measured in each run, and the warm-up before the first round's and the others'. */
	tasks: number;
	warmUpTasks: { first: number; later: number };
	rounds: CostRound[];
	throughNginx: CostRun;
	/** The median over the rounds, when the peer ran. */
	ratiosToPeer?: Record<string, number>;
	peerSkipped?: string;
}

async function costPhase(): Promise<CostPhase> {
	await setWorkerCounts(DEFAULT_WORKERS.py, DEFAULT_WORKERS.go);
	const peerSkipped = peerUnavailable();
	if (peerSkipped) log(`cost: Go peer skipped: ${peerSkipped}`);
	const peer = peerSkipped ? null : await GoPeer.start();
	const rounds: CostRound[] = [];
	try {
		const roundCount = peer ? COST_ROUNDS : 1;
		for (let round = 1; round <= roundCount; round++) {
			const shape = { tasks: COST_TASKS, warmUpTasks: round === 1 ? FIRST_WARM_UP_TASKS : WARM_UP_TASKS };
			log(`cost, round ${round} of ${roundCount}: ${COST_TASKS} tasks straight to both gateways after ${shape.warmUpTasks}, CPU of every component`);
			const cluster = await costDirect(shape, QUEUE, BENCH_DB);
			if (!peer) {
				rounds.push({ cluster });
				continue;
			}
			log(`cost, round ${round} of ${roundCount}: ${COST_TASKS} tasks through the Go peer (1 api + 2 workers), on its own queue and database`);
			const peerRun = await peer.cost(shape);
			rounds.push({ cluster, peer: peerRun, ratiosToPeer: costRatios(cluster, peerRun) });
		}
	} finally {
		await peer?.stop();
	}
	log(`cost: ${COST_TASKS} tasks through Nginx`);
	const throughNginx = await costThroughNginx({ tasks: COST_TASKS, warmUpTasks: WARM_UP_TASKS }, QUEUE, BENCH_DB);
	const ratios = rounds.flatMap(round => (round.ratiosToPeer ? [round.ratiosToPeer] : []));
	const warmUpTasks = { first: FIRST_WARM_UP_TASKS, later: WARM_UP_TASKS };
	return { tasks: COST_TASKS, warmUpTasks, rounds, throughNginx, ...(peerSkipped ? { peerSkipped } : { ratiosToPeer: medians(ratios) }) };
}

/** The median of each figure over the rounds. */
function medians(rounds: Record<string, number>[]): Record<string, number> {
	const median = (values: number[]) => {
		const sorted = [...values].sort((a, b) => a - b);
		const middle = Math.floor(sorted.length / 2);
		return sorted.length % 2 ? sorted[middle] : Math.round(((sorted[middle - 1] + sorted[middle]) / 2) * 100) / 100;
	};
	return Object.fromEntries(Object.keys(rounds[0]).map(figure => [figure, median(rounds.map(round => round[figure]))]));
}

function costRows(runs: CostRun[]) {
	const components = ["gateways", "workers", "store", "rabbitmq", "nginx", "total"];
	return runs.map(run => ({
		figure: `CPU-ms / 1000 tasks: ${run.name}`,
		value: components
			.filter(name => name in run.cpu.perThousandTasks)
			.map(name => `${name} ${run.cpu.perThousandTasks[name]}`)
			.join(", "),
		ceiling: "",
		ratio: `${run.tasksPerSecond} tasks/s`,
		target: "",
	}));
}

/** One run's CPU per task, component by component, and tasks/s over a reference run's. */
function costRatioRow(figure: string, ratios: Record<string, number>, target = "") {
	const components = ["total", "gateways", "workers", "store", "rabbitmq"].map(name => `${name} ${ratios[name]}x`).join(", ");
	return { figure, value: components, ceiling: "", ratio: `${ratios.tasksPerSecond}x tasks/s`, target };
}

async function measure() {
	const sampler = new RssSampler();
	sampler.start();
	const results: Record<string, unknown> = {
		measuredAt: new Date().toISOString(),
		machine: await describeMachine(rabbitUrl(), MONGO_URI),
		phases: [...PHASES],
	};
	const rows: Record<string, unknown>[] = [];

	if (PHASES.has("ceilings")) {
		log("ceiling: Nginx in front of a bare Node server");
		const httpCeiling = await nginxToBareNode(INGEST);
		log("ceiling: raw amqplib publishing with pipelined confirms");
		const publishCeiling = await amqpPublish(rabbitUrl(), 50_000);
		log("ceiling: unordered inserts of 200 documents into the store");
		const storeCeiling = await storeInsert(MONGO_URI, 20_000);
		results.ceilings = { nginxToBareNode: httpCeiling, amqpPublish: publishCeiling, storeInsert: storeCeiling };
		rows.push(
			{
				figure: "ceiling: Nginx -> bare Node req/s, p50 / p99 ms",
				value: `${httpCeiling.requestsPerSecond}, ${httpCeiling.p50Ms} / ${httpCeiling.p99Ms}`,
				ceiling: "",
				ratio: "",
				target: "",
			},
			{ figure: "ceiling: publish msg/s (amqplib)", value: publishCeiling.messagesPerSecond, ceiling: "", ratio: "", target: "" },
			{ figure: "ceiling: store docs/s", value: storeCeiling.documentsPerSecond, ceiling: "", ratio: "", target: "" },
		);
	}
	const ceilings = results.ceilings as { nginxToBareNode: LoadFigures } | undefined;
	const httpCeiling = ceilings?.nginxToBareNode;

	if (PHASES.has("ingest")) {
		log(`ingest: POST /flask/tasks through Nginx, ${INGEST.connections} connections, ${INGEST.durationSeconds} s`);
		const ingest: LoadFigures = await postTasks(`${NGINX}/flask/tasks`, INGEST);
		await waitUntilStored(0);
		results.ingest = ingest;
		rows.push(
			{
				figure: "ingest req/s (POST via Nginx)",
				value: ingest.requestsPerSecond,
				ceiling: httpCeiling?.requestsPerSecond ?? "",
				ratio: httpCeiling ? ratio(ingest.requestsPerSecond, httpCeiling.requestsPerSecond) : "",
				target: "",
			},
			{
				figure: "ingest p50 / p99 ms",
				value: `${ingest.p50Ms} / ${ingest.p99Ms}`,
				ceiling: httpCeiling ? `${httpCeiling.p50Ms} / ${httpCeiling.p99Ms}` : "",
				ratio: httpCeiling ? `p99 ${round(ingest.p99Ms / httpCeiling.p99Ms)}x` : "",
				target: "p99 ≤ 2x",
			},
			{ figure: "ingest non-2xx / errors", value: `${ingest.non2xx} / ${ingest.errors}`, ceiling: "", ratio: "", target: "0" },
		);
	}

	if (PHASES.has("cost")) {
		const cost = await costPhase();
		results.cost = cost;
		cost.rounds.forEach((round, index) => {
			const runs = round.peer ? [round.cluster, round.peer] : [round.cluster];
			rows.push(...costRows(runs.map(run => ({ ...run, name: `round ${index + 1}, ${run.name}` }))));
			if (round.ratiosToPeer) rows.push(costRatioRow(`round ${index + 1}, cluster / Go peer`, round.ratiosToPeer));
		});
		rows.push(...costRows([cost.throughNginx]));
		if (cost.ratiosToPeer) {
			rows.push(
				costRatioRow(
					`cluster / Go peer, median of ${cost.rounds.length} rounds`,
					cost.ratiosToPeer,
					COST_GOALS.map(goal => `${goal.figure} ${goalText(goal)}`).join(", "),
				),
			);
		}
	}

	if (PHASES.has("queue-types")) {
		await setWorkerCounts(DEFAULT_WORKERS.py, DEFAULT_WORKERS.go);
		const types = await queueTypes(COST_TASKS, QUEUE, BENCH_DB, log);
		results.queueTypes = types;
		rows.push(...costRows(types.runs));
		rows.push(...Object.entries(types.ratiosToClassic).map(([name, ratios]) => costRatioRow(`${name} / ${types.runs[0].name}`, ratios)));
	}

	if (PHASES.has("end-to-end")) {
		const endToEndRuns: EndToEnd[] = [];
		for (const [py, go] of [[DEFAULT_WORKERS.py, DEFAULT_WORKERS.go], ...WORKER_CURVE]) {
			log(`end to end: ${END_TO_END_TASKS} tasks with ${py} worker-py + ${go} worker-go`);
			endToEndRuns.push(await endToEnd({ py, go }, END_TO_END_TASKS));
		}
		results.endToEnd = endToEndRuns;
		rows.push(
			...endToEndRuns.map(run => ({
				figure: `end to end tasks/s, ${run.workers} worker(s)`,
				value: run.tasksPerSecond,
				ceiling: "",
				ratio: "",
				target: "",
			})),
		);
	}

	if (PHASES.has("backlog")) {
		log(`backlog: ${BACKLOG_TASKS} tasks posted while the workers are stopped`);
		const backlogRun = await backlog(sampler);
		results.backlog = backlogRun;
		rows.push(
			{
				figure: "backlog ingest req/s, workers stopped",
				value: backlogRun.ingest.requestsPerSecond,
				ceiling: httpCeiling?.requestsPerSecond ?? "",
				ratio: httpCeiling ? ratio(backlogRun.ingest.requestsPerSecond, httpCeiling.requestsPerSecond) : "",
				target: "holds",
			},
			{
				figure: "api-flask RSS MB before / after backlog",
				value: `${backlogRun.gatewayRssMb.before} / ${backlogRun.gatewayRssMb.after}`,
				ceiling: "",
				ratio: "",
				target: "flat",
			},
			{ figure: `backlog drain tasks/s (${backlogRun.waiting} waiting)`, value: backlogRun.drainTasksPerSecond, ceiling: "", ratio: "", target: "" },
		);
	}
	if (PHASES.has("reads")) {
		log("reads: newest page, deep keyset page and get by id at each store size; a list flood and ingest CPU at the largest");
		const reads = await readsPhase(NGINX, MONGO_URI, QUEUE, BENCH_DB);
		results.reads = reads;
		const ms = (figure: { median: number; min: number; max: number }) => `${figure.median} (${figure.min}-${figure.max})`;
		for (const size of reads.latencies) {
			for (const [kind, figure] of Object.entries(size.figures)) {
				rows.push({
					figure: `${kind} at ${size.stored} stored: p50 / p99 ms, median (spread) of ${READ_ROUNDS} rounds`,
					value: `${ms(figure.p50Ms)} / ${ms(figure.p99Ms)}, ${figure.fiveHundreds} 5xx`,
					ceiling: "",
					ratio: "",
					target: kind === "getById" ? "p99 ≤ 10" : "p50 ≤ 20, p99 ≤ 100",
				});
			}
		}
		const flood = reads.flood?.figures;
		if (flood) {
			rows.push(
				{ figure: "list flood: p99 POST flooded / alone", value: ms(flood.postP99Ratio), ceiling: "", ratio: "", target: "≤ 1.5" },
				{ figure: "list flood: p99 GET by id flooded / alone", value: ms(flood.getP99Ratio), ceiling: "", ratio: "", target: "≤ 1.5" },
				{ figure: "list flood: s until the store is idle after", value: ms(flood.storeIdleSecondsAfterFlood), ceiling: "", ratio: "", target: "≤ 5" },
			);
		}
		const ingest = reads.ingest?.figures;
		const perTask = (ratios: Record<string, { median: number; min: number; max: number }>) =>
			["total", "gateways", "workers", "store"].map(name => `${name} ${ms(ratios[name])}`).join(", ");
		if (ingest) {
			rows.push({
				figure: `ingest CPU per task, cluster, ${reads.ingest?.stored} stored / empty`,
				value: perTask(ingest.clusterStoredOverEmpty),
				ceiling: "",
				ratio: "",
				target: "total ≤ 1.15",
			});
		}
		if (ingest && "peerStoredOverEmpty" in ingest) {
			rows.push({
				figure: `ingest CPU per task, Go peer, ${reads.ingest?.stored} stored / empty`,
				value: perTask(ingest.peerStoredOverEmpty),
				ceiling: "",
				ratio: "",
				target: "",
			});
		}
	}
	sampler.stop();
	results.peakRssMb = Object.fromEntries([...sampler.peakMb].sort());
	rows.push(...[...sampler.peakMb].sort().map(([node, mb]) => ({ figure: `peak RSS MB ${node}`, value: mb, ceiling: "", ratio: "", target: "≤ 150" })));

	mkdirSync(path.dirname(OUT), { recursive: true });
	writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);
	console.table(rows);
	log(`figures written to ${path.relative(ROOT, OUT)}`);
	if (OUT === RESULTS_FILE) {
		writeReport(OUT);
		log(`${path.relative(ROOT, REPORT_PAGE)} rendered from them`);
	} else {
		log(`\`npm run bench:report -- ${path.relative(ROOT, OUT)}\` renders them into ${path.relative(ROOT, REPORT_PAGE)}`);
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
