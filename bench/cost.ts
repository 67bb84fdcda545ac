import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import amqp, { type Channel, type ChannelModel } from "amqplib";
import { MongoClient } from "mongodb";
import { cpuMsOf, measureCpu, pidListeningOn, withChildren, type Components, type CpuPerTask } from "./cpu";
import { postTasks } from "./load";
import { LIST_INDEX, LIST_SORT } from "../lib/store/task-reads";
import { pidOf, rabbitPorts, rabbitUrl, ROOT, STACK, stackNodes } from "../scripts/stack-control";

/**
 * The cost phase: a fixed number of tasks through the cluster, timed until every one is stored,
 * with the CPU each component spent on them; and the same for the Go peer (../shared/peers/gin)
 * on the same RabbitMQ and store, on a queue and database of its own. Each run starts on an
 * empty collection.
 */

export interface CostRun {
	name: string;
	tasks: number;
	non2xx: number;
	/** Tasks over `seconds`. */
	tasksPerSecond: number;
	/** From the first post to the last task's store write (its `processed_at`). */
	seconds: number;
	/** From the first post until the consumers had gone idle: the window the CPU is taken over. */
	settledSeconds: number;
	cpu: CpuPerTask;
}

const MONGO_URI = "mongodb://127.0.0.1:27017/";
const CONNECTIONS = 64;
/**
 * Tasks posted before a stack's first measured run. A gateway's per-request code is optimised by
 * V8 within a few thousand requests, but a worker's per-batch code (the store call, the driver's
 * insert, the ack) runs some fifty times a second and is optimised only after it has run a few
 * thousand times. A service that has been busy for half a minute is past that.
 */
export const FIRST_WARM_UP_TASKS = 100_000;
/** Before each later run: the connection pools and the queue settle. */
export const WARM_UP_TASKS = 10_000;
/** The Go peer's sources: BENCH_PEER, else shared/peers/gin beside the repository. */
const PEER_SOURCE = path.resolve(ROOT, process.env.BENCH_PEER ?? "../shared/peers/gin");
const PEER_BUILD = path.join(STACK, "peer-gin");
const PEER_RUN = path.join(STACK, "peer-gin-run");
const PEER_QUEUE = "peer_task_queue";
const PEER_DB = "notes_tasks_bench_peer";

/** FerretDB and RabbitMQ's Erlang VMs (one, or the cluster's three): shared by the cluster and the peer. */
async function sharedServers(): Promise<Components> {
	return { store: [await pidOf("ferretdb")], rabbitmq: rabbitPorts().map(pidListeningOn) };
}

async function stackComponents(withNginx: boolean): Promise<Components> {
	const nodes = await stackNodes();
	const components: Components = {
		gateways: nodes.filter(node => node.role.startsWith("api-")).map(node => node.pid),
		workers: nodes.filter(node => node.role.startsWith("worker-")).map(node => node.pid),
		...(await sharedServers()),
	};
	if (withNginx) components.nginx = withChildren(await pidOf("nginx"));
	return components;
}

/** Watches one queue over a single long-lived channel, so that polling costs RabbitMQ next to nothing. */
class QueueWatch {
	private constructor(
		private readonly connection: ChannelModel,
		private readonly channel: Channel,
		private readonly queue: string,
	) {}

	static async open(queue: string): Promise<QueueWatch> {
		const connection = await amqp.connect(rabbitUrl());
		return new QueueWatch(connection, await connection.createChannel(), queue);
	}

	async ready(): Promise<number> {
		return (await this.channel.checkQueue(this.queue)).messageCount;
	}

	async close(): Promise<void> {
		await this.connection.close();
	}
}

/**
 * Resolves once the queue has no ready message and the consuming processes have gone idle
 * (under 2 ms of CPU in 100 ms, three times running), with the moment the work ended. The
 * store's count is not polled: on FerretDB every count reads the whole collection, and that
 * would be charged to the run. It is checked once afterwards instead.
 */
async function drained(watch: QueueWatch, consumers: number[]): Promise<number> {
	while ((await watch.ready()) > 0) await sleep(50);
	let idleSince = performance.now();
	for (let quiet = 0; quiet < 3;) {
		const before = cpuMsOf(consumers);
		await sleep(100);
		const busy = cpuMsOf(consumers) - before >= 2;
		if (busy) idleSince = performance.now();
		quiet = busy ? 0 : quiet + 1;
	}
	return idleSince;
}

async function waitForQueue(queue: string): Promise<void> {
	for (let tries = 0; ; tries++) {
		const watch = await QueueWatch.open(queue);
		const exists = await watch.ready().then(
			() => true,
			() => false,
		);
		await watch.close().catch(() => undefined);
		if (exists) return;
		if (tries === 100) throw new Error(`queue ${queue} was not declared within 10 s`);
		await sleep(100);
	}
}

/** How many tasks the store holds, and when the last of them was stamped for its write. */
async function stored(db: string): Promise<{ count: number; lastProcessedAt: number }> {
	const client = await MongoClient.connect(MONGO_URI);
	try {
		const tasks = client.db(db).collection<{ processed_at: Date }>("tasks");
		const [last] = await tasks
			.find({}, { projection: { processed_at: 1 } })
			.sort({ processed_at: -1 })
			.limit(1)
			.toArray();
		return { count: await tasks.countDocuments(), lastProcessedAt: last?.processed_at.getTime() ?? 0 };
	} finally {
		await client.close();
	}
}

/**
 * The tasks created at or after `since` (ms), and when the last of them was stamped: walked newest
 * first along the list index, a thousand at a time, as the API pages. Counting a collection of a
 * million on FerretDB reads every document, for minutes; this reads only the run's.
 */
async function storedSince(db: string, since: number): Promise<{ count: number; lastProcessedAt: number }> {
	const client = await MongoClient.connect(MONGO_URI);
	try {
		const tasks = client.db(db).collection<{ _id: string; created_at: Date | string; processed_at: Date }>("tasks");
		let count = 0;
		let lastProcessedAt = 0;
		let filter: object = {};
		for (;;) {
			const page = await tasks.find(filter, { sort: LIST_SORT, limit: 1000, projection: { created_at: 1, processed_at: 1 } }).toArray();
			const run = page.filter(task => new Date(task.created_at).getTime() >= since);
			count += run.length;
			for (const task of run) lastProcessedAt = Math.max(lastProcessedAt, task.processed_at.getTime());
			if (run.length < page.length || page.length < 1000) return { count, lastProcessedAt };
			const last = page[page.length - 1];
			filter = { $or: [{ created_at: { $lt: last.created_at } }, { created_at: last.created_at, _id: { $lt: last._id } }] };
		}
	} finally {
		await client.close();
	}
}

/** Drops a database of the store: its tasks and their indexes, which a node creates again at its start. */
export async function dropStore(db: string): Promise<void> {
	const client = await MongoClient.connect(MONGO_URI);
	try {
		await client.db(db).dropDatabase();
	} finally {
		await client.close();
	}
}

/**
 * Empties a database's tasks, leaving the list index, the one index that the cluster and the
 * peer both create. Every cost run then starts on the same store: an insert costs FerretDB more
 * as the collection grows (the cluster's held 680,000 tasks after a few benches, the peer's a
 * run's worth). A drop is instant; deleting them all is not (FerretDB refuses it at that size).
 */
export async function resetStore(db: string): Promise<void> {
	const client = await MongoClient.connect(MONGO_URI);
	try {
		const tasks = client.db(db).collection("tasks");
		await tasks.drop().catch((err: { codeName?: string }) => {
			if (err.codeName !== "NamespaceNotFound") throw err;
		});
		await tasks.createIndex(LIST_INDEX.key, { name: LIST_INDEX.name });
	} finally {
		await client.close();
	}
}

export interface RunShape {
	/** Tasks posted and measured. */
	tasks: number;
	/** Tasks posted before, not measured. */
	warmUpTasks: number;
	/** Runs on the collection as it is (a million stored, say), instead of an empty one. */
	keepStore?: boolean;
}

async function runCost(
	name: string,
	components: Components,
	queue: string,
	db: string,
	{ tasks, warmUpTasks, keepStore }: RunShape,
	urls: string[],
): Promise<CostRun> {
	if (!keepStore) await resetStore(db);
	const watch = await QueueWatch.open(queue);
	try {
		// Long-running services are warm: JIT compilation and pool set-up are not a task's cost.
		const warmUp = { connections: CONNECTIONS / urls.length, amount: warmUpTasks / urls.length };
		await Promise.all(urls.map(url => postTasks(url, warmUp)));
		await drained(watch, [...components.workers, ...components.store]);
		const before = keepStore ? { count: 0, lastProcessedAt: 0 } : await stored(db);
		let non2xx = 0;
		let startedAt = 0;
		let settledSeconds = 0;
		const { cpu } = await measureCpu(components, tasks, async () => {
			startedAt = Date.now();
			const started = performance.now();
			const load = { connections: CONNECTIONS / urls.length, amount: tasks / urls.length };
			const posted = await Promise.all(urls.map(url => postTasks(url, load)));
			non2xx = posted.reduce((sum, figures) => sum + figures.non2xx + figures.errors, 0);
			const ended = await drained(watch, [...components.workers, ...components.store]);
			settledSeconds = (ended - started) / 1000;
		});
		const after = keepStore ? await storedSince(db, startedAt) : await stored(db);
		const storedNow = after.count - before.count;
		if (storedNow !== tasks - non2xx) throw new Error(`${name}: ${tasks - non2xx} tasks accepted but ${storedNow} stored`);
		// The idle watch ends up to 100 ms after the last write, later if a process stirs after the
		// work (a collection, a heartbeat): the end to end time is taken from the store instead.
		const seconds = (after.lastProcessedAt - startedAt) / 1000;
		const round = (value: number) => Math.round(value * 100) / 100;
		return { name, tasks, non2xx, tasksPerSecond: Math.round(tasks / seconds), seconds: round(seconds), settledSeconds: round(settledSeconds), cpu };
	} finally {
		await watch.close();
	}
}

/** Tasks posted straight to both gateways, half each: the figure to set beside the peer's. */
export async function costDirect(shape: RunShape, queue: string, db: string): Promise<CostRun> {
	return runCost("cluster, straight to the gateways", await stackComponents(false), queue, db, shape, [
		"http://127.0.0.1:5001/tasks",
		"http://127.0.0.1:5002/tasks",
	]);
}

/** The same through Nginx, which is how users reach the cluster. */
export async function costThroughNginx(shape: RunShape, queue: string, db: string): Promise<CostRun> {
	return runCost("cluster, through Nginx", await stackComponents(true), queue, db, shape, [
		"http://127.0.0.1:8080/flask/tasks",
		"http://127.0.0.1:8080/go/tasks",
	]);
}

/** CPU-ms per 1,000 tasks of `run` over those of `reference`, component by component, and tasks/s likewise. */
export function costRatios(run: CostRun, reference: CostRun): Record<string, number> {
	const ratio = (value: number, of: number) => Math.round((value / of) * 100) / 100;
	const ratios: Record<string, number> = {};
	for (const [component, value] of Object.entries(reference.cpu.perThousandTasks)) {
		ratios[component] = ratio(run.cpu.perThousandTasks[component], value);
	}
	ratios.tasksPerSecond = ratio(run.tasksPerSecond, reference.tasksPerSecond);
	return ratios;
}

/** A TCP port that nothing listens on now, for the peer's api. */
function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = net.createServer().once("error", reject);
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address() as net.AddressInfo;
			server.close(() => resolve(port));
		});
	});
}

/** Why the peer cannot run here, or null when it can. */
export function peerUnavailable(): string | null {
	if (!existsSync(PEER_SOURCE)) return `no Go peer at ${PEER_SOURCE}`;
	if (spawnSync("go", ["version"]).status !== 0) return "Go is not installed";
	return null;
}

function peerScript(args: string[], env: Record<string, string> = {}): void {
	execFileSync(path.join(PEER_BUILD, "run.sh"), args, { stdio: "pipe", env: { ...process.env, ...env } });
}

/** The Go peer's api and 2 workers, on the stack's RabbitMQ and store, on a queue and database of their own. */
export class GoPeer {
	private constructor(
		private readonly port: number,
		private readonly components: Components,
		private readonly db: string,
	) {}

	/** Builds the peer in a copy of its own (shared/ is read-only) and starts it, on its own database or `db`. */
	static async start(db = PEER_DB): Promise<GoPeer> {
		cpSync(PEER_SOURCE, PEER_BUILD, { recursive: true, filter: source => !source.includes(`${path.sep}bin`) });
		execFileSync("go", ["build", "-o", "bin/", "./cmd/..."], { cwd: PEER_BUILD, stdio: "pipe" });
		rmSync(PEER_RUN, { recursive: true, force: true });
		const port = await freePort();
		peerScript([PEER_RUN], { GO_PORT: String(port), RABBIT_QUEUE: PEER_QUEUE, DB_NAME: db, WORKERS: "2" });
		const pid = (name: string) => Number(readFileSync(path.join(PEER_RUN, name), "utf8"));
		const workers = readdirSync(PEER_RUN)
			.filter(file => /^worker-\d+\.pid$/.test(file))
			.map(pid);
		const peer = new GoPeer(port, { gateways: [pid("api.pid")], workers, ...(await sharedServers()) }, db);
		try {
			// Another process on the port would answer the load, and its CPU would not be counted.
			if (pidListeningOn(port) !== pid("api.pid")) throw new Error(`the Go peer's api is not the process listening on port ${port}`);
			// The workers declare the queue; a publish before that would be dropped as unroutable.
			await waitForQueue(PEER_QUEUE);
		} catch (err) {
			await peer.stop();
			throw err;
		}
		return peer;
	}

	/** The run shape of the cluster's, against the peer's api. */
	cost(shape: RunShape): Promise<CostRun> {
		return runCost("Go peer (1 api + 2 workers)", this.components, PEER_QUEUE, this.db, shape, [`http://127.0.0.1:${this.port}/tasks`]);
	}

	/** Stops the peer and removes its queue, and its database unless it was given one. */
	async stop(): Promise<void> {
		peerScript(["stop", PEER_RUN]);
		const connection = await amqp.connect(rabbitUrl());
		await (await connection.createChannel()).deleteQueue(PEER_QUEUE);
		await connection.close();
		if (this.db === PEER_DB) await dropStore(PEER_DB);
	}
}
