import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import amqp, { type ChannelModel, type ConfirmChannel, type Options } from "amqplib";
import { MongoClient } from "mongodb";
import { loadConfig } from "../../lib/config";
import { newTask, type AcceptedTask, type QueuedTask, type TaskDocument } from "../../lib/task";
import { watchDeadLetters } from "../support/dead-letters";
import { publishReport, textTable } from "../support/fault-report";
import { postTask, titled } from "../support/http";
import { scrape, type Sample } from "../support/prometheus-text";
import { connectOrExplain, RABBIT_URL } from "../support/rabbitmq";
import { gatewaysReady, inParallel, leaveStackHealthy, nodePid, removeTestTasks, type Stack } from "../support/stack";
import { waitForStored } from "../support/stored-tasks";
import { ROOT } from "../../scripts/stack-control";

/**
 * A hostile producer on task_queue, with a plain AMQP client (amqplib, not the project's queue
 * code): each kind of bad message mixed into a stream of good tasks, published straight to the
 * queue and posted through both gateways. Every good task must be stored exactly once, each bad
 * message dead-lettered alone with its reason, and no worker may restart. The run prints the
 * end-to-end latency of the good tasks against a clean run, and the workers' memory.
 */

const run = promisify(execFile);
const MARK = `hostile-${Date.now().toString(36)}`;
const GOOD_PER_RUN = 300;
const VIA_GATEWAYS = 60;
/** Good tasks published in a burst every BURST_EVERY_MS: a steady stream, not one backlog. */
const BURST = 10;
const BURST_EVERY_MS = 20;
const JSON_MESSAGE: Options.Publish = { persistent: true, contentType: "application/json" };

interface BadMessage {
	what: string;
	body: Buffer;
	options?: Options.Publish;
	/** The start of the x-dead-reason header it must get. */
	reason: RegExp;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

/** Every kind of bad message the broker accepts, with the reason a worker must give for it. */
function badMessages(maxMessageBytes: number, collidingId: string): BadMessage[] {
	return [
		{ what: "not JSON", body: Buffer.from("this is { not JSON"), reason: /^unreadable: body is not JSON/ },
		{ what: "an empty body", body: Buffer.alloc(0), reason: /^unreadable: body is not JSON/ },
		{ what: "a JSON array", body: Buffer.from('[{"title": "in an array"}]'), reason: /^unreadable: body is not a JSON object/ },
		{ what: "a JSON number", body: Buffer.from("42"), reason: /^unreadable: body is not a JSON object/ },
		{ what: "a title nested 5000 deep", body: Buffer.from(`{"title": ${nested(5000)}}`), reason: /^unreadable: body is nested deeper/ },
		{
			what: `a body over MAX_MESSAGE_BYTES (${maxMessageBytes + 1} bytes)`,
			body: json({ title: `${MARK} padded`, padding: "x".repeat(maxMessageBytes) }),
			reason: /^too_large: /,
		},
		{
			what: "100,000 array items (a body over MAX_MESSAGE_BYTES)",
			body: json({ title: `${MARK} items`, items: new Array(100_000).fill(0) }),
			reason: /^too_large: /,
		},
		{
			what: "a body just under RabbitMQ's max_message_size",
			body: json({ title: `${MARK} nearly huge`, padding: "x".repeat(maxBrokerMessageBytes() - 1024) }),
			reason: /^too_large: /,
		},
		{
			what: "a created_at in year 10000",
			body: json({ title: `${MARK} y10k`, created_at: "+010000-01-01T00:00:00.000Z" }),
			reason: /^invalid: .*created_at/,
		},
		{ what: "a created_at of 253402300800000 ms", body: json({ title: `${MARK} ms`, created_at: 253402300800000 }), reason: /^invalid: .*created_at/ },
		{ what: "a created_at of -62198755200000 ms", body: json({ title: `${MARK} bc`, created_at: -62198755200000 }), reason: /^invalid: .*created_at/ },
		{ what: "a malformed created_at", body: json({ title: `${MARK} when`, created_at: "yesterday-ish" }), reason: /^invalid: .*created_at/ },
		{ what: "a created_at of the wrong type", body: json({ title: `${MARK} bool`, created_at: true }), reason: /^invalid: .*created_at/ },
		{ what: "a numeric title", body: json({ title: 42 }), reason: /^invalid: .*title/ },
		{ what: "a numeric id", body: json({ title: `${MARK} numeric id`, id: 42 }), reason: /^invalid: .*id/ },
		{ what: "an array as source", body: json({ title: `${MARK} source`, source: ["go"] }), reason: /^invalid: .*source/ },
		{ what: "an id over 100 characters", body: json({ title: `${MARK} long id`, id: "i".repeat(101) }), reason: /^invalid: .*id/ },
		{ what: "an id that another task has", body: json({ title: `${MARK} collider`, id: collidingId, source: "go" }), reason: /^duplicate_id: / },
		{
			what: "a title with invalid UTF-8 bytes",
			body: Buffer.concat([Buffer.from(`{"title": "${MARK} `), Buffer.from([0xc0, 0xaf, 0xff]), Buffer.from('"}')]),
			reason: /^unreadable: body is not valid UTF-8/,
		},
		{
			what: "a wrong content type",
			body: json({ title: `${MARK} as text` }),
			options: { persistent: true, contentType: "text/plain" },
			reason: /^unreadable: content type "text\/plain"/,
		},
		{
			what: "a gzip-compressed body",
			body: gzipSync(json({ title: `${MARK} gzipped` })),
			options: { persistent: true, contentType: "application/json", contentEncoding: "gzip" },
			reason: /^unreadable: content encoding "gzip"/,
		},
		{ what: "a gzip-compressed body, undeclared", body: gzipSync(json({ title: `${MARK} gzipped` })), reason: /^unreadable: / },
		{
			what: "random binary bytes",
			body: randomBytes(2000),
			options: { persistent: true, contentType: "application/octet-stream" },
			reason: /^unreadable: /,
		},
	];
}

const percentile = (values: number[], p: number) => {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};

/** Moleculer updates its process metrics this often (its collectInterval). */
const PROCESS_METRICS_EVERY_MS = 5000;

interface WorkerMemory {
	/** V8 heap in use, from the worker's metrics. */
	heap: number;
	/** Resident set now, and its peak since the process started (VmHWM), from /proc. */
	rss: number;
	peakRss: number;
}

/** A worker's memory in MiB. */
async function workerMemory(metricsUrl: string, pid: number): Promise<WorkerMemory> {
	const samples = await scrape(metricsUrl);
	const status = readFileSync(`/proc/${pid}/status`, "utf8");
	const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]) / 1024;
	const heap = samples.find((sample: Sample) => sample.name.startsWith("process_memory_heap_size_used"))?.value ?? NaN;
	return { heap: heap / 2 ** 20, rss: kib("VmRSS"), peakRss: kib("VmHWM") };
}

describe("a hostile producer on task_queue, among good tasks", () => {
	let stack: Stack;
	let connection: ChannelModel;
	let publisher: ConfirmChannel;
	let mongo: MongoClient;
	let workers: string[];
	let pidsBefore: number[];
	let maxMessageBytes: number;
	const report: string[] = [];

	const tasks = () => mongo.db(stack.dbName).collection<TaskDocument>("tasks");
	const metricsUrlOf = (node: string) =>
		`http://${
			stack.env.STACK_METRICS.split(",")
				.find(entry => entry.startsWith(`${node}=`))
				?.split("=")[1]
		}/metrics`;

	/** Publishes the good tasks at a steady pace, the bad messages spread among them; resolves once all are confirmed. */
	async function publishStream(good: QueuedTask[], bad: { id: string; message: BadMessage }[]): Promise<void> {
		const badEvery = bad.length > 0 ? Math.max(1, Math.floor(good.length / bad.length)) : Infinity;
		let nextBad = 0;
		for (let start = 0; start < good.length; start += BURST) {
			for (const [offset, task] of good.slice(start, start + BURST).entries()) {
				publisher.sendToQueue(stack.taskQueue, json(task), { ...JSON_MESSAGE, messageId: task.id });
				if ((start + offset) % badEvery === 0 && nextBad < bad.length) {
					const { id, message } = bad[nextBad++];
					publisher.sendToQueue(stack.taskQueue, message.body, { persistent: true, ...message.options, messageId: id });
				}
			}
			await new Promise(resolve => setTimeout(resolve, BURST_EVERY_MS));
		}
		for (const { id, message } of bad.slice(nextBad))
			publisher.sendToQueue(stack.taskQueue, message.body, { persistent: true, ...message.options, messageId: id });
		await publisher.waitForConfirms();
	}

	/** The stored documents of `ids` once all are there. */
	const storedAll = (ids: string[]) => waitForStored(tasks(), ids, 60_000, 200);

	const latenciesMs = (documents: TaskDocument[]) => documents.map(document => document.processed_at.getTime() - document.created_at.getTime());

	beforeAll(async () => {
		stack = await gatewaysReady();
		connection = await connectOrExplain();
		publisher = await connection.createConfirmChannel();
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
		workers = stack.nodes.filter(node => node.startsWith("worker-"));
		pidsBefore = await Promise.all(workers.map(async worker => (await nodePid(worker)) ?? Promise.reject(new Error(`${worker} is not running`))));
		maxMessageBytes = loadConfig({}).maxMessageBytes;
	});

	afterAll(async () => {
		if (report.length > 0) publishReport(report.join("\n"), path.join(ROOT, ".stack/hostile-producer-report.txt"));
		await connection?.close();
		await leaveStackHealthy();
		await removeTestTasks(mongo, stack, `^${MARK} `);
	}, 180_000);

	let cleanP99 = NaN;

	it("stores a clean stream of good tasks (the latency baseline)", async () => {
		const good = Array.from({ length: GOOD_PER_RUN }, (_, n) => newTask(`${MARK} clean #${n}`, "flask"));
		await publishStream(good, []);
		const stored = await storedAll(good.map(task => task.id));
		cleanP99 = percentile(latenciesMs(stored), 99);
		expect(stored).toHaveLength(GOOD_PER_RUN);
	});

	it("dead-letters each bad message alone with its reason, and stores every good task around them once", async () => {
		const owner = newTask(`${MARK} owner of an id`, "go");
		publisher.sendToQueue(stack.taskQueue, json(owner), { ...JSON_MESSAGE, messageId: owner.id });
		await publisher.waitForConfirms();
		await storedAll([owner.id]);

		const bad = badMessages(maxMessageBytes, owner.id).map((message, n) => ({ id: `${MARK}-bad-${n}`, message }));
		const good = Array.from({ length: GOOD_PER_RUN }, (_, n) => newTask(`${MARK} among the bad #${n}`, "flask"));
		// Title-only messages of a foreign producer are good tasks too: their messageId is the task id.
		const plain = Array.from({ length: 10 }, (_, n) => ({ id: `${MARK}-plain-${n}`, title: `${MARK} title only #${n}` }));
		const memoryBefore = await Promise.all(workers.map((worker, n) => workerMemory(metricsUrlOf(worker), pidsBefore[n])));
		const deadLetters = await watchDeadLetters(connection, stack.taskQueue, MARK);
		try {
			const viaGateways = inParallel(
				Array.from({ length: VIA_GATEWAYS }, (_, n) => n),
				4,
				async n => {
					const response = await postTask(`${stack.baseUrl}/${n % 2 ? "go" : "flask"}`, titled(`${MARK} via a gateway #${n}`));
					expect(response.status).toBe(202);
					return ((await response.json()) as AcceptedTask).id;
				},
			);
			for (const task of plain) publisher.sendToQueue(stack.taskQueue, json({ title: task.title }), { persistent: true, messageId: task.id });
			await publishStream(good, bad);
			const gatewayIds = await viaGateways;

			const arrived = await deadLetters.waitFor(
				bad.map(entry => entry.id),
				30_000,
			);
			const wrong = bad.flatMap(({ id, message }) => {
				const reason = arrived.get(id)?.message.properties.headers?.["x-dead-reason"] as string | undefined;
				return reason !== undefined && message.reason.test(reason) ? [] : [`${message.what}: ${reason ?? "not dead-lettered"}`];
			});
			expect(wrong).toEqual([]);
			for (const { id, message } of bad) expect(arrived.get(id)?.message.content.equals(message.body)).toBe(true);

			const goodIds = [...good.map(task => task.id), ...plain.map(task => task.id), ...gatewayIds];
			const stored = await storedAll(goodIds);
			// Exactly once, and nothing of the bad ones: every stored task of the run is a good one.
			expect(await tasks().countDocuments({ title: { $regex: `^${MARK} (among the bad|title only|via a gateway) ` } })).toBe(goodIds.length);
			expect(await tasks().countDocuments({ title: { $regex: `^${MARK} ` } })).toBe(GOOD_PER_RUN + 1 + goodIds.length);
			expect(await tasks().findOne({ _id: owner.id })).toMatchObject({ title: owner.title });
			// Only the bad ones reached the dead-letter queue.
			expect([...deadLetters.arrived.keys()].sort()).toEqual(bad.map(entry => entry.id).sort());

			const mixedP99 = percentile(latenciesMs(stored.filter(document => document.title.includes("among the bad"))), 99);
			await new Promise(resolve => setTimeout(resolve, PROCESS_METRICS_EVERY_MS + 500));
			const memoryAfter = await Promise.all(workers.map((worker, n) => workerMemory(metricsUrlOf(worker), pidsBefore[n])));
			report.push(
				`Hostile producer: ${bad.length} kinds of bad message among ${goodIds.length} good tasks (${GOOD_PER_RUN} published, ${plain.length} title-only, ${gatewayIds.length} through the gateways)`,
				`  good tasks stored: ${stored.length}/${goodIds.length}, dead-lettered: 0; bad messages dead-lettered: ${arrived.size}/${bad.length}`,
				`  end-to-end p99: clean run ${cleanP99} ms, among bad messages ${mixedP99} ms (added ${mixedP99 - cleanP99} ms)`,
				textTable(
					["worker", "heap before MiB", "heap after MiB", "RSS before MiB", "RSS after MiB", "peak RSS before MiB", "peak RSS after MiB"],
					workers.map((worker, n) =>
						[
							memoryBefore[n].heap,
							memoryAfter[n].heap,
							memoryBefore[n].rss,
							memoryAfter[n].rss,
							memoryBefore[n].peakRss,
							memoryAfter[n].peakRss,
						].reduce((row, value) => [...row, value.toFixed(1)], [worker]),
					),
				),
			);
		} finally {
			await deadLetters.close();
		}
	});

	it.each([
		["a body over RabbitMQ's max_message_size", () => json({ title: `${MARK} huge`, padding: "x".repeat(maxBrokerMessageBytes() + 1) })],
		["3 million array items", () => json({ title: `${MARK} items`, items: new Array(3_000_000).fill(0) })],
	])("has RabbitMQ refuse %s at publish", async (_case, body) => {
		// A channel of its own: RabbitMQ closes the channel that published it.
		const channel = await connection.createConfirmChannel();
		const refused = await new Promise<Error | null | undefined>(resolve => {
			channel.once("error", resolve);
			channel.publish("", stack.taskQueue, body(), { ...JSON_MESSAGE, messageId: `${MARK}-huge` }, err => resolve(err));
		});
		expect(String(refused)).toMatch(/larger than configured max size|PRECONDITION_FAILED/);
		await channel.close().catch(() => undefined);
	});

	it("dead-letters as poison a message that came back unacknowledged too often, and moves a once-returned one on to be stored", async () => {
		// Ids with MARK: the dead-letter watcher takes only this run's messages off the queue.
		const poison = newTask(`${MARK} returned too often`, "go", `${MARK}-poison`);
		const returnedOnce = newTask(`${MARK} returned once`, "go", `${MARK}-returned-once`);
		const deadLetters = await watchDeadLetters(connection, stack.taskQueue, MARK);
		try {
			for (const [task, returns] of [
				[poison, 4],
				[returnedOnce, 0],
			] as const) {
				await takeAndDie(task, { "x-redeliveries": returns });
			}
			const arrived = await deadLetters.waitFor([poison.id], 10_000);
			expect(arrived.get(poison.id)?.message.properties.headers?.["x-dead-reason"]).toMatch(/^poison: came back unacknowledged 5 times/);
			await storedAll([returnedOnce.id]);
			expect(await tasks().countDocuments({ _id: poison.id })).toBe(0);
		} finally {
			await deadLetters.close();
		}
	});

	it("lists the dead letters and replays them from the command line (npm run dlq)", async () => {
		const fixed = newTask(`${MARK} replayed once its cause is fixed`, "go", `${MARK}-replayed`);
		const deadQueue = `${stack.taskQueue}.dead`;
		publisher.sendToQueue(deadQueue, json(fixed), {
			...JSON_MESSAGE,
			messageId: fixed.id,
			headers: { "x-dead-reason": "store_refused: the store was read-only" },
		});
		await publisher.waitForConfirms();
		const { messageCount } = await publisher.checkQueue(deadQueue);

		const listing = await dlq("list", String(messageCount));
		expect(listing).toContain(fixed.id);
		expect(listing).toContain("store_refused: the store was read-only");
		expect((await publisher.checkQueue(deadQueue)).messageCount).toBe(messageCount);

		expect(await dlq("replay", String(messageCount))).toContain(`${messageCount} messages moved back to ${stack.taskQueue}`);
		await storedAll([fixed.id]);
	});

	it("leaves every worker process running: the same pids as before", async () => {
		expect(await Promise.all(workers.map(nodePid))).toEqual(pidsBefore);
		for (const pid of pidsBefore) expect(() => process.kill(pid, 0)).not.toThrow();
	});

	/**
	 * Plays a worker that dies holding `task`: a consumer of higher priority than the workers
	 * takes it and closes its connection unacknowledged, and RabbitMQ redelivers it to a worker.
	 */
	async function takeAndDie(task: QueuedTask, headers: Record<string, unknown>): Promise<void> {
		const doomed = await amqp.connect(RABBIT_URL);
		try {
			const channel = await doomed.createChannel();
			await channel.prefetch(1);
			let onTaken = () => undefined as void;
			const taken = new Promise<void>((resolve, reject) => {
				onTaken = resolve;
				setTimeout(() => reject(new Error(`${task.title} not taken within 10 s`)), 10_000).unref();
			});
			// Registered before the publish: RabbitMQ hands a message to the consumer of highest priority that has room.
			await channel.consume(stack.taskQueue, message => message?.properties.messageId === task.id && onTaken(), { priority: 100 });
			publisher.sendToQueue(stack.taskQueue, json(task), { ...JSON_MESSAGE, messageId: task.id, headers });
			await publisher.waitForConfirms();
			await taken;
		} finally {
			await doomed.close();
		}
	}
});

/** RabbitMQ's max_message_size, as rabbitmq/limits.conf sets it for the stack. */
function maxBrokerMessageBytes(): number {
	return Number(/^max_message_size\s*=\s*(\d+)/m.exec(readFileSync(path.join(ROOT, "rabbitmq/limits.conf"), "utf8"))?.[1]);
}

/** `npm run dlq -- <args>` against the stack; resolves with its output. */
async function dlq(...args: string[]): Promise<string> {
	const { stdout } = await run("npx", ["tsx", "scripts/dlq.ts", ...args], { cwd: ROOT, timeout: 60_000 });
	return stdout;
}
