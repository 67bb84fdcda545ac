// The read phase of `npm run bench` (BENCH_PHASES=reads), on the running stack through Nginx, as
// users read: at each store size, the newest page, a keyset page deep in the collection and a get
// by id; at the largest, a flood of lists beside posts and gets, and the ingest CPU per task with
// that many tasks stored against an empty store, beside the Go peer on the same FerretDB.
//
// The latencies are what a user sees, not the most the stack can answer: each kind of read comes
// from a client address of its own (127.0.0.2 and up, which Nginx limits as any other host), sent
// on a schedule at the list rate a client may keep up unhindered (NGINX_LIST_RATE, or
// BENCH_READ_PACE per second), whatever the answers take. The flood's listing clients come from
// BENCH_FLOOD_ADDRESSES addresses of their own (16: one each; 1: all from one), so that Nginx's
// list limits hold them as they would hold other hosts; its posts and gets come from this machine,
// which NGINX_LIMIT_EXEMPT exempts, as it always has.
//
// Each size has a database of its own, seeded by bench/seed.ts and kept afterwards (a million
// takes minutes to seed; a later run adds only what is missing): `npm run bench` restarts the
// nodes on it. BENCH_READS_DROP=1 drops them at the end.
import { readdirSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { MongoClient } from "mongodb";
import { encodeCursor } from "../lib/store/task-reads";
import { pidOf, stackEnv, stackNodes, useDatabase } from "../scripts/stack-control";
import { clientAt, request, type EdgeAnswer } from "../test/support/edge-client";
import { costDirect, costRatios, dropStore, GoPeer, peerUnavailable, WARM_UP_TASKS, type CostRun, type RunShape } from "./cost";
import { peerSeededDocument, seedTasks, type SeededPosition } from "./seed";

const SIZES = (process.env.BENCH_READ_SIZES ?? "10000,100000,1000000").split(",").map(Number);
/** Rounds of each measurement; each figure is the median over them, with their spread. */
export const READ_ROUNDS = Number(process.env.BENCH_READ_ROUNDS ?? 5);
const ROUNDS = READ_ROUNDS;
/** Requests of each kind per round, on a schedule. */
const SAMPLES = Number(process.env.BENCH_READ_SAMPLES ?? 200);
/** Reads per second of each kind: by default the list rate one client may keep up at Nginx. */
const pacePerSecond = () => Number(process.env.BENCH_READ_PACE ?? stackEnv().NGINX_LIST_RATE);
const FLOOD = {
	listers: 16,
	addresses: Number(process.env.BENCH_FLOOD_ADDRESSES ?? 16),
	giveUpMs: 2_000,
	seconds: Number(process.env.BENCH_FLOOD_SECONDS ?? 10),
	posters: 4,
	getters: 2,
	/** A user paging beside the flood, from an address of its own: what the list limits cost a user. */
	pagerPerSecond: 2,
};
const INGEST_TASKS = Number(process.env.BENCH_INGEST_TASKS ?? 20_000);
/** Parts of the phase to run: BENCH_READ_PARTS=latency,flood leaves out the (long) ingest runs. */
const PARTS = new Set((process.env.BENCH_READ_PARTS ?? "latency,flood,ingest").split(","));
/** The store counts as idle once under this share of a core for two seconds running. */
const IDLE_PERCENT = 10;

export const readsDb = (size: number) => `notes_tasks_bench_reads_${size}`;
const peerReadsDb = (size: number) => `notes_tasks_bench_peer_reads_${size}`;
const ASIDE = "tasks_seeded";

const log = (message: string) => console.log(`[bench] reads: ${message}`);
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

interface Latency {
	requests: number;
	p50Ms: number;
	p99Ms: number;
	/** Answers by status, or by error name for requests that got none. */
	statuses: Record<string, number>;
}

/** The median of the rounds' values, and the lowest and highest. */
interface Spread {
	median: number;
	min: number;
	max: number;
}

function spread(values: number[]): Spread {
	const sorted = [...values].sort((a, b) => a - b);
	return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1] };
}

function latencyOf(latencies: number[], statuses: Record<string, number>): Latency {
	latencies.sort((a, b) => a - b);
	const at = (q: number) => round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0);
	return { requests: latencies.length, p50Ms: at(0.5), p99Ms: at(0.99), statuses };
}

type Answer = Response | EdgeAnswer;

/** One request: its latency, and its status or error name. */
async function timedRequest(send: () => Promise<Answer>): Promise<[number, string]> {
	const started = performance.now();
	const status = await send().then(
		async res => {
			if (res instanceof Response) await res.arrayBuffer();
			return String(res.status);
		},
		(err: Error) => err.name,
	);
	return [performance.now() - started, status];
}

function latencyOfAnswers(answers: [number, string][]): Latency {
	const statuses: Record<string, number> = {};
	for (const [, status] of answers) statuses[status] = (statuses[status] ?? 0) + 1;
	return latencyOf(
		answers.map(([ms]) => ms),
		statuses,
	);
}

/** Latencies of `clients` clients, each sending `send` after its last answer until `over`. */
async function closedLoop(clients: number, over: () => boolean, send: (client: number) => Promise<Answer>): Promise<Latency> {
	const answers: [number, string][] = [];
	await Promise.all(
		Array.from({ length: clients }, async (_, client) => {
			while (!over()) answers.push(await timedRequest(() => send(client)));
		}),
	);
	return latencyOfAnswers(answers);
}

/**
 * `count` requests sent `perSecond` on schedule, whatever the answers take (an open loop, as a
 * user reads), the first after `offsetMs`.
 */
async function paced(count: number, perSecond: number, send: (i: number) => Promise<Answer>, offsetMs = 0): Promise<Latency> {
	const started = performance.now() + offsetMs;
	const answers: Promise<[number, string]>[] = [];
	for (let i = 0; i < count; i++) {
		const wait = started + (i * 1000) / perSecond - performance.now();
		if (wait > 0) await sleep(wait);
		answers.push(timedRequest(() => send(i)));
	}
	return latencyOfAnswers(await Promise.all(answers));
}

/** A GET from `address`, which Nginx sees as a client of its own; given up after `timeoutMs` without an answer. */
const getFrom = (address: string, timeoutMs = 10_000) => {
	const agent = clientAt(address);
	return Object.assign((url: string) => request(agent, url, { timeoutMs }), { close: () => agent.destroy() });
};

const pick = <T>(items: T[]) => items[Math.floor(Math.random() * items.length)];
const fiveHundreds = (latency: Latency) =>
	Object.entries(latency.statuses).reduce((sum, [status, n]) => sum + (/^5/.test(status) || !/^\d/.test(status) ? n : 0), 0);

/** Fills `db` to `size` tasks of the cluster's shape (or tops it up); the positions to read from. */
async function seeded(mongoUri: string, db: string, size: number): Promise<SeededPosition[]> {
	const client = await MongoClient.connect(mongoUri);
	try {
		const result = await seedTasks(client.db(db).collection("tasks"), size);
		if (result.inserted) log(`seeded ${db} with ${result.inserted} tasks in ${result.seconds} s`);
		return result.samples;
	} finally {
		await client.close();
	}
}

/** Newest page, a deep keyset page and a get by id, through both gateways, ROUNDS times. */
async function readsAt(nginx: string, mongoUri: string, size: number) {
	const samples = await seeded(mongoUri, readsDb(size), size);
	await useDatabase(readsDb(size));
	// The older half of the collection: pages after these positions are deep in it.
	const deep = samples.slice(0, Math.max(1, Math.floor(samples.length / 2)));
	const gateway = (i: number) => (i % 2 ? "go" : "flask");
	const readers = { newestPage: getFrom("127.0.0.2"), deepKeysetPage: getFrom("127.0.0.3"), getById: getFrom("127.0.0.4") };
	const kinds = {
		newestPage: (i: number) => readers.newestPage(`${nginx}/${gateway(i)}/tasks?pageSize=20`),
		deepKeysetPage: (i: number) => readers.deepKeysetPage(`${nginx}/${gateway(i)}/tasks?pageSize=20&after=${encodeCursor(pick(deep))}`),
		getById: (i: number) => readers.getById(`${nginx}/${gateway(i)}/tasks/${pick(samples).id}`),
	};
	const pace = pacePerSecond();
	// The kinds' schedules interleave, so that they do not all ask at the same instant.
	const eachKind = (count: number) =>
		Promise.all(
			Object.entries(kinds).map(async ([kind, send], k, all) => [kind, await paced(count, pace, send, (k * 1000) / pace / all.length)] as const),
		).then(Object.fromEntries);
	const rounds: Record<string, Latency>[] = [];
	try {
		// Connections opened, code optimised, pages cached as after any minute of use.
		await eachKind(50);
		for (let r = 0; r < ROUNDS; r++) rounds.push(await eachKind(SAMPLES));
	} finally {
		Object.values(readers).forEach(reader => reader.close());
	}
	const figures = Object.fromEntries(
		Object.keys(kinds).map(kind => [
			kind,
			{
				p50Ms: spread(rounds.map(measured => measured[kind].p50Ms)),
				p99Ms: spread(rounds.map(measured => measured[kind].p99Ms)),
				fiveHundreds: rounds.reduce((sum, measured) => sum + fiveHundreds(measured[kind]), 0),
			},
		]),
	) as Record<keyof typeof kinds, { p50Ms: Spread; p99Ms: Spread; fiveHundreds: number }>;
	log(`${size} stored: ${JSON.stringify(figures)}`);
	return { stored: size, samplesPerRound: SAMPLES, perSecond: pace, rounds, figures };
}

/** A process's state, parent and CPU time so far (user + system), from /proc; null once it has exited. */
function procStat(pid: number): { ppid: number; cpuMs: number } | null {
	let stat: string;
	try {
		stat = readFileSync(`/proc/${pid}/stat`, "utf8");
	} catch {
		return null;
	}
	const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return { ppid: Number(fields[1]), cpuMs: (Number(fields[11]) + Number(fields[12])) * 10 };
}

function cpuMs(pid: number): number {
	return procStat(pid)?.cpuMs ?? 0;
}

/** `pid` and every process below it (Nginx's workers, RabbitMQ's Erlang VM under its script). */
function processTree(pid: number): number[] {
	const parents = new Map<number, number>();
	for (const entry of readdirSync("/proc")) {
		if (!/^\d+$/.test(entry)) continue;
		const stat = procStat(Number(entry));
		if (stat) parents.set(Number(entry), stat.ppid);
	}
	const tree = [pid];
	for (let i = 0; i < tree.length; i++) for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child);
	return tree;
}

/** The machine's busy CPU time so far, all cores, from /proc/stat. */
function machineBusyMs(): number {
	const [, ...ticks] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).map(Number);
	const idle = ticks[3] + ticks[4];
	return (ticks.reduce((sum, n) => sum + n, 0) - idle) * 10;
}

/**
 * Where the CPU goes while a phase runs: the stack's processes by part (the store, each gateway
 * node, the workers, Nginx, RabbitMQ), this bench's own process, and all the rest of the machine
 * (other work on it), each in percent of one core over the phase.
 */
async function cpuSampler(): Promise<() => Record<string, number>> {
	const groups: Record<string, number[]> = {};
	const add = (name: string, pids: number[]) => (groups[name] = [...(groups[name] ?? []), ...pids]);
	add("store", [await pidOf("ferretdb")]);
	add("nginx", processTree(await pidOf("nginx")));
	add("rabbitmq", processTree(await pidOf("rabbitmq")));
	for (const node of await stackNodes()) add(node.role.startsWith("worker") ? "workers" : node.role, [node.pid]);
	const sum = (pids: number[]) => pids.reduce((total, pid) => total + cpuMs(pid), 0);
	const before = Object.fromEntries(Object.entries(groups).map(([name, pids]) => [name, sum(pids)]));
	const benchBefore = process.cpuUsage();
	const machineBefore = machineBusyMs();
	const started = performance.now();
	return () => {
		const elapsedMs = performance.now() - started;
		const percent = (ms: number) => Math.round((ms / elapsedMs) * 100);
		const used = Object.fromEntries(Object.entries(groups).map(([name, pids]) => [name, sum(pids) - before[name]]));
		const bench = process.cpuUsage(benchBefore);
		used.bench = (bench.user + bench.system) / 1000;
		const stack = Object.values(used).reduce((total, ms) => total + ms, 0);
		used.otherWork = Math.max(0, machineBusyMs() - machineBefore - stack);
		return Object.fromEntries(Object.entries(used).map(([name, ms]) => [name, percent(ms)]));
	};
}

/** Seconds until the store's CPU stays under IDLE_PERCENT of a core for two seconds in a row. */
async function secondsUntilIdle(pid: number, limitSeconds = 60): Promise<{ seconds: number; cpuPercentBySecond: number[] }> {
	const bySecond: number[] = [];
	let quiet = 0;
	while (quiet < 2 && bySecond.length < limitSeconds) {
		const before = cpuMs(pid);
		await sleep(1000);
		const percent = Math.round((cpuMs(pid) - before) / 10);
		bySecond.push(percent);
		quiet = percent < IDLE_PERCENT ? quiet + 1 : 0;
	}
	return { seconds: bySecond.length - quiet, cpuPercentBySecond: bySecond };
}

/**
 * POST /tasks and GET /tasks/:id through Nginx for FLOOD.seconds, first alone, then beside
 * FLOOD.listers clients listing (newest and deep pages) that give up after 2 s; and how long the
 * store stays busy after each.
 */
async function listFlood(nginx: string, samples: SeededPosition[]) {
	const storePid = await pidOf("ferretdb");
	const deep = samples.slice(0, Math.max(1, Math.floor(samples.length / 2)));
	const post = () => fetch(`${nginx}/flask/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"title":"benchmark task"}' });
	const get = () => fetch(`${nginx}/go/tasks/${pick(samples).id}`, { signal: AbortSignal.timeout(10_000) });
	const listers = Array.from({ length: FLOOD.addresses }, (_, i) => getFrom(`127.0.0.${20 + i}`, FLOOD.giveUpMs));
	const pager = getFrom("127.0.0.5");
	const pageAsUser = (i: number) => pager(`${nginx}/${i % 2 ? "go" : "flask"}/tasks?pageSize=20`);
	const list = (client: number) => {
		const page = client % 2 ? `&after=${encodeCursor(pick(deep))}` : "";
		return listers[client % listers.length](`${nginx}/${client % 4 < 2 ? "flask" : "go"}/tasks?pageSize=20${page}`);
	};
	const phase = async (flood: boolean) => {
		const end = performance.now() + FLOOD.seconds * 1000;
		const over = () => performance.now() > end;
		const cpu = await cpuSampler();
		const [posts, gets, lists, pages] = await Promise.all([
			closedLoop(FLOOD.posters, over, post),
			closedLoop(FLOOD.getters, over, get),
			flood ? closedLoop(FLOOD.listers, over, list) : null,
			paced(FLOOD.seconds * FLOOD.pagerPerSecond, FLOOD.pagerPerSecond, pageAsUser),
		]);
		return { posts, gets, lists, pages, cpuPercent: cpu(), loadAverage: loadavg()[0], storeIdle: await secondsUntilIdle(storePid) };
	};
	type Phase = Awaited<ReturnType<typeof phase>>;
	const rounds: { alone: Phase; flooded: Phase; postP99Ratio: number; getP99Ratio: number }[] = [];
	try {
		for (let r = 0; r < ROUNDS; r++) {
			const alone = await phase(false);
			const flooded = await phase(true);
			rounds.push({
				alone,
				flooded,
				postP99Ratio: round(flooded.posts.p99Ms / alone.posts.p99Ms, 2),
				getP99Ratio: round(flooded.gets.p99Ms / alone.gets.p99Ms, 2),
			});
		}
	} finally {
		[...listers, pager].forEach(client => client.close());
	}
	const figures = {
		postP99Ratio: spread(rounds.map(r => r.postP99Ratio)),
		getP99Ratio: spread(rounds.map(r => r.getP99Ratio)),
		storeIdleSecondsAfterFlood: spread(rounds.map(r => r.flooded.storeIdle.seconds)),
		postP99MsAlone: spread(rounds.map(r => r.alone.posts.p99Ms)),
		postP99MsFlooded: spread(rounds.map(r => r.flooded.posts.p99Ms)),
		getP99MsAlone: spread(rounds.map(r => r.alone.gets.p99Ms)),
		getP99MsFlooded: spread(rounds.map(r => r.flooded.gets.p99Ms)),
		pagerP99MsAlone: spread(rounds.map(r => r.alone.pages.p99Ms)),
		pagerP99MsFlooded: spread(rounds.map(r => r.flooded.pages.p99Ms)),
		listsPerSecond: spread(rounds.map(r => round((r.flooded.lists?.requests ?? 0) / FLOOD.seconds))),
		loadAverage: spread(rounds.map(r => r.flooded.loadAverage)),
	};
	// CPU by process in percent of a core, median over the rounds, alone and flooded.
	const cpuByPart = (of: (r: (typeof rounds)[number]) => Record<string, number>) =>
		Object.fromEntries(Object.keys(of(rounds[0])).map(part => [part, spread(rounds.map(r => of(r)[part] ?? 0)).median]));
	const cpuPercent = { alone: cpuByPart(r => r.alone.cpuPercent), flooded: cpuByPart(r => r.flooded.cpuPercent) };
	const listStatuses = rounds.map(r => r.flooded.lists?.statuses);
	const pagerStatuses = rounds.map(r => r.flooded.pages.statuses);
	const env = stackEnv();
	const listLimit = {
		rate: env.NGINX_LIST_RATE,
		burst: env.NGINX_LIST_BURST,
		queue: env.NGINX_LIST_QUEUE,
		totalRate: env.NGINX_LIST_TOTAL_RATE,
		totalQueue: env.NGINX_LIST_TOTAL_QUEUE,
		exempt: env.NGINX_LIMIT_EXEMPT,
	};
	log(`flood: ${JSON.stringify({ ...figures, cpuPercent, listStatuses, pagerStatuses, listLimit })}`);
	return { clients: FLOOD, listLimit, rounds, figures, cpuPercent, listStatuses, pagerStatuses };
}

/** Sets a database's seeded tasks aside (a rename: instant) and back, for a run on an empty collection. */
async function withSeededAside<T>(mongoUri: string, dbs: string[], run: () => Promise<T>): Promise<T> {
	const client = await MongoClient.connect(mongoUri);
	try {
		for (const db of dbs) await client.db(db).collection("tasks").rename(ASIDE);
		try {
			return await run();
		} finally {
			for (const db of dbs) {
				await client.db(db).collection("tasks").drop();
				await client.db(db).collection(ASIDE).rename("tasks");
			}
		}
	} finally {
		await client.close();
	}
}

/**
 * CPU per task of the cluster and of the Go peer with `size` tasks already stored, and on an
 * empty collection of the same database, in alternation, ROUNDS times.
 */
async function ingestBySize(mongoUri: string, queue: string, size: number) {
	const skipped = peerUnavailable();
	const peerDb = peerReadsDb(size);
	if (!skipped) {
		const client = await MongoClient.connect(mongoUri);
		const result = await seedTasks(client.db(peerDb).collection("tasks"), size, peerSeededDocument).finally(() => client.close());
		if (result.inserted) log(`seeded ${peerDb} with ${result.inserted} tasks of the peer's shape in ${result.seconds} s`);
	}
	const peer = skipped ? null : await GoPeer.start(peerDb);
	const db = readsDb(size);
	const shape = (keepStore: boolean): RunShape => ({ tasks: INGEST_TASKS, warmUpTasks: WARM_UP_TASKS, keepStore });
	const rounds: { empty: { cluster: CostRun; peer?: CostRun }; stored: { cluster: CostRun; peer?: CostRun } }[] = [];
	try {
		for (let r = 0; r < ROUNDS; r++) {
			log(`ingest, round ${r + 1} of ${ROUNDS}: ${INGEST_TASKS} tasks on an empty collection, then with ${size} stored`);
			const empty = await withSeededAside(mongoUri, peer ? [db, peerDb] : [db], async () => ({
				cluster: await costDirect(shape(false), queue, db),
				peer: await peer?.cost(shape(false)),
			}));
			const stored = { cluster: await costDirect(shape(true), queue, db), peer: await peer?.cost(shape(true)) };
			rounds.push({ empty, stored });
		}
	} finally {
		await peer?.stop();
	}
	const ratio = (of: (round: (typeof rounds)[number]) => Record<string, number>) =>
		Object.fromEntries(Object.keys(of(rounds[0])).map(figure => [figure, spread(rounds.map(round => of(round)[figure]))]));
	const figures = {
		clusterStoredOverEmpty: ratio(round => costRatios(round.stored.cluster, round.empty.cluster)),
		...(peer
			? {
					peerStoredOverEmpty: ratio(round => costRatios(round.stored.peer as CostRun, round.empty.peer as CostRun)),
					clusterOverPeerStored: ratio(round => costRatios(round.stored.cluster, round.stored.peer as CostRun)),
				}
			: { peerSkipped: skipped }),
	};
	log(`ingest: ${JSON.stringify(figures)}`);
	return { stored: size, tasksPerRun: INGEST_TASKS, rounds, figures };
}

/** The whole phase; leaves the nodes on `nodesDb` again. */
export async function readsPhase(nginx: string, mongoUri: string, queue: string, nodesDb: string) {
	try {
		const latencies = [];
		if (PARTS.has("latency")) for (const size of SIZES) latencies.push(await readsAt(nginx, mongoUri, size));
		const largest = Math.max(...SIZES);
		const samples = await seeded(mongoUri, readsDb(largest), largest);
		// The nodes are on the last size's database after the latencies.
		if (!PARTS.has("latency") || SIZES.at(-1) !== largest) await useDatabase(readsDb(largest));
		let flood = null;
		if (PARTS.has("flood")) {
			log(`flood at ${largest} stored: ${FLOOD.listers} clients listing beside posts and gets, ${ROUNDS} rounds`);
			flood = await listFlood(nginx, samples);
		}
		const ingest = PARTS.has("ingest") ? await ingestBySize(mongoUri, queue, largest) : null;
		return { latencies, flood, ingest };
	} finally {
		await useDatabase(nodesDb);
		if (process.env.BENCH_READS_DROP === "1") for (const size of SIZES) await Promise.all([dropStore(readsDb(size)), dropStore(peerReadsDb(size))]);
	}
}
