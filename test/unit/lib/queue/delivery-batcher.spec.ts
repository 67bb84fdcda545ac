import { once } from "node:events";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { DeliveryBatcher, type DeadLetterCause, type Outcome } from "../../../../lib/queue/delivery-batcher";
import type { TaskBatchHandler } from "../../../../lib/queue/task-queue";
import { newTask } from "../../../../lib/task";
import { eventually } from "../../../support/eventually";

function batcherWith(handler: TaskBatchHandler, maxWaitMs = 0, quietMs = maxWaitMs) {
	const settled: { id: string; outcome: Outcome; cause?: DeadLetterCause }[] = [];
	const batcher = new DeliveryBatcher<string>({
		handler,
		maxBatch: 50,
		maxWaitMs,
		quietMs,
		retryDelayMs: () => 1,
		onError: () => undefined,
		settle: (id, outcome, cause) => settled.push({ id, outcome, ...(cause ? { cause } : {}) }),
	});
	return { batcher, settled };
}

/** An error as the MongoDB driver raises it when the store is unreachable. */
const storeUnreachable = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:27017"), { name: "MongoNetworkError" });
/** The tasks service's parameter validation, as Moleculer raises it. */
const validationError = () => Object.assign(new Error("Parameters validation error!"), { name: "ValidationError", type: "VALIDATION_ERROR" });
const outcomes = (settled: { id: string; outcome: Outcome }[]) => Object.fromEntries(settled.map(entry => [entry.id, entry.outcome]));

describe("DeliveryBatcher", () => {
	it("hands deliveries of one turn to the handler as one batch, capped at maxBatch", async () => {
		const sizes: number[] = [];
		const { batcher, settled } = batcherWith(async tasks => void sizes.push(tasks.length));
		for (let n = 0; n < 120; n++) batcher.push(newTask(`t${n}`, "go"), `t${n}`);
		await batcher.drain();
		expect(sizes).toEqual([50, 50, 20]);
		expect(settled.every(entry => entry.outcome === "stored")).toBe(true);
		expect(settled).toHaveLength(120);
	});

	it("writes one batch at a time, gathering what arrives meanwhile into the next", async () => {
		let writing = 0;
		let mostAtOnce = 0;
		const sizes: number[] = [];
		const { batcher, settled } = batcherWith(async tasks => {
			mostAtOnce = Math.max(mostAtOnce, ++writing);
			sizes.push(tasks.length);
			await new Promise(resolve => setTimeout(resolve, 5));
			writing--;
		});
		batcher.push(newTask("alone", "go"), "alone");
		await new Promise(resolve => setImmediate(resolve));
		for (let n = 0; n < 30; n++) batcher.push(newTask(`t${n}`, "go"), `t${n}`);
		await batcher.drain();
		expect(mostAtOnce).toBe(1);
		expect(sizes).toEqual([1, 30]);
		expect(settled).toHaveLength(31);
	});

	describe("with maxWaitMs", () => {
		const pushed = (batcher: DeliveryBatcher<string>, from: number, count: number) => {
			for (let n = from; n < from + count; n++) batcher.push(newTask(`t${n}`, "go"), `t${n}`);
		};

		it.each([
			["lets a short batch wait for more deliveries, from its first one", 40, 40],
			["writes a short batch once deliveries pause for quietMs, long before maxWaitMs", 60_000, 30],
		])("%s", async (_case, maxWaitMs, quietMs) => {
			const sizes: number[] = [];
			const { batcher } = batcherWith(async tasks => void sizes.push(tasks.length), maxWaitMs, quietMs);
			pushed(batcher, 0, 1);
			await sleep(10);
			pushed(batcher, 1, 4);
			expect(sizes).toEqual([]);
			await sleep(60);
			expect(sizes).toEqual([5]);
		});

		it("keeps a batch open while deliveries keep coming, up to maxWaitMs from its first", async () => {
			const sizes: number[] = [];
			// quietMs far above the gaps between deliveries, so that a busy machine's late timers do not
			// pass for a pause.
			const { batcher } = batcherWith(async tasks => void sizes.push(tasks.length), 400, 150);
			const started = performance.now();
			let count = 0;
			while (sizes.length === 0 && count < 200) {
				pushed(batcher, count++, 1);
				await sleep(10);
			}
			const writtenAfterMs = performance.now() - started;
			await batcher.drain();
			// Deliveries 10 ms apart never leave the batch quiet for 150 ms: it is written at 400 ms, short of a full batch.
			expect(writtenAfterMs).toBeGreaterThanOrEqual(390);
			expect(sizes[0]).toBeGreaterThanOrEqual(10);
			expect(sizes.reduce((sum, size) => sum + size)).toBe(count);
		});

		it("writes a full batch at once, and what piled up behind it without waiting again", async () => {
			const sizes: number[] = [];
			const { batcher } = batcherWith(async tasks => {
				sizes.push(tasks.length);
				await sleep(10);
			}, 60_000);
			pushed(batcher, 0, 50);
			expect(sizes).toEqual([50]);
			pushed(batcher, 50, 120);
			await sleep(100);
			expect(sizes).toEqual([50, 50, 50, 20]);
		});

		it("counts deliveries that waited unread while the process was busy as arrivals, not as a pause", async () => {
			const sizes: number[] = [];
			const { batcher } = batcherWith(async tasks => void sizes.push(tasks.length), 60_000, 30);
			const server = net.createServer(socket => socket.on("data", () => pushed(batcher, 1, 1)));
			await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
			const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
			await once(server, "connection");
			try {
				pushed(batcher, 0, 1);
				// A delivery is on its way while the process cannot run for longer than quietMs: when
				// it runs again, the quiet timer and the socket are both due.
				client.write("delivery");
				const busyUntil = performance.now() + 50;
				while (performance.now() < busyUntil);
				await sleep(10);
				expect(sizes).toEqual([]);
				await eventually("the batch written", async () => (sizes.length > 0 ? sizes : undefined), 2_000, 5);
				expect(sizes).toEqual([2]);
			} finally {
				client.destroy();
				server.close();
			}
		});

		it("does not hold back a lingering batch when drained", async () => {
			const sizes: number[] = [];
			const { batcher, settled } = batcherWith(async tasks => void sizes.push(tasks.length), 60_000);
			pushed(batcher, 0, 3);
			await batcher.drain();
			expect(sizes).toEqual([3]);
			expect(settled.map(entry => entry.outcome)).toEqual(["stored", "stored", "stored"]);
		});
	});

	it("retries a failed batch and settles it stored once the handler succeeds", async () => {
		let calls = 0;
		const { batcher, settled } = batcherWith(async () => {
			if (++calls < 3) throw new Error("transient");
		});
		batcher.push(newTask("retry", "go"), "retry");
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(calls).toBe(3);
		expect(settled).toEqual([{ id: "retry", outcome: "stored" }]);
	});

	it("holds a batch through a store outage for as many attempts as it takes, never dead-lettering it", async () => {
		let calls = 0;
		const { batcher, settled } = batcherWith(async () => {
			if (++calls <= 40) throw storeUnreachable();
		});
		for (let n = 0; n < 10; n++) batcher.push(newTask(`t${n}`, "go"), `t${n}`);
		await eventually("every task settled", async () => (settled.length === 10 ? true : undefined), 2000, 1);
		expect(calls).toBe(41);
		expect(settled.every(entry => entry.outcome === "stored")).toBe(true);
	});

	it("splits a batch the store refuses until only the refused task is dead-lettered, and stores the rest", async () => {
		const written: number[] = [];
		const { batcher, settled } = batcherWith(async tasks => {
			if (tasks.some(task => task.title === "bad")) throw validationError();
			written.push(tasks.length);
		});
		for (let n = 0; n < 40; n++) batcher.push(newTask(n === 17 ? "bad" : `t${n}`, "go"), `t${n}`);
		await batcher.drain();
		expect(written.reduce((sum, size) => sum + size)).toBe(39);
		expect(settled.filter(entry => entry.outcome === "dead-letter")).toEqual([
			{ id: "t17", outcome: "dead-letter", cause: { reason: "store_refused", detail: "the store refused the task: Parameters validation error!" } },
		]);
		expect(settled.filter(entry => entry.outcome === "stored")).toHaveLength(39);
	});

	it("dead-letters a task that fails with an unknown error while the store takes the others", async () => {
		const { batcher, settled } = batcherWith(async tasks => {
			if (tasks.some(task => task.title === "odd")) throw new Error("something about this one");
		});
		for (let n = 0; n < 8; n++) batcher.push(newTask(n === 3 ? "odd" : `t${n}`, "go"), `t${n}`);
		await batcher.drain();
		expect(outcomes(settled)).toMatchObject({ t3: "dead-letter", t0: "stored", t7: "stored" });
		expect(settled).toHaveLength(8);
	});

	it("holds a batch whose every task fails with an unknown error: the store's fault, not theirs", async () => {
		let failing = true;
		const { batcher, settled } = batcherWith(async () => {
			if (failing) throw new Error("the store says no to everything");
		});
		for (let n = 0; n < 8; n++) batcher.push(newTask(`t${n}`, "go"), `t${n}`);
		await sleep(30);
		expect(settled).toEqual([]);
		failing = false;
		await eventually("every task settled", async () => (settled.length === 8 ? true : undefined), 2000, 1);
		expect(settled.every(entry => entry.outcome === "stored")).toBe(true);
	});

	it("dead-letters the tasks the handler reports refused one by one, and settles the others stored", async () => {
		const { batcher, settled } = batcherWith(async tasks =>
			tasks
				.filter(task => task.title === "taken id")
				.map(task => ({ task, reason: "duplicate_id" as const, detail: "id already belongs to another task" })),
		);
		batcher.push(newTask("fine", "go"), "fine");
		batcher.push(newTask("taken id", "go"), "taken");
		await batcher.drain();
		expect(settled).toEqual([
			{ id: "fine", outcome: "stored" },
			{ id: "taken", outcome: "dead-letter", cause: { reason: "duplicate_id", detail: "id already belongs to another task" } },
		]);
	});

	it("releases a batch held by an outage for redelivery when drained", async () => {
		const { batcher, settled } = batcherWith(async () => {
			throw storeUnreachable();
		});
		batcher.push(newTask("released", "go"), "released");
		await new Promise(resolve => setTimeout(resolve, 10));
		await batcher.drain();
		expect(settled).toEqual([{ id: "released", outcome: "released" }]);
	});
});
