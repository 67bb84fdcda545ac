import { once } from "node:events";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { DeliveryBatcher, type Outcome } from "../../lib/queue/delivery-batcher";
import { newTask, type QueuedTask } from "../../lib/task";

function batcherWith(handler: (tasks: QueuedTask[]) => Promise<void>, maxAttempts = 3, maxWaitMs = 0, quietMs = maxWaitMs) {
	const settled: { id: string; outcome: Outcome; reason?: string }[] = [];
	const batcher = new DeliveryBatcher<string>({
		handler,
		maxBatch: 50,
		maxWaitMs,
		quietMs,
		maxAttempts,
		retryDelayMs: () => 1,
		onError: () => undefined,
		settle: (id, outcome, reason) => settled.push({ id, outcome, reason }),
	});
	return { batcher, settled };
}

/** A batcher whose store fails every time with `message`. */
const batcherFailingWith = (message: string, maxAttempts: number) =>
	batcherWith(async () => {
		throw new Error(message);
	}, maxAttempts);

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
			const { batcher } = batcherWith(async tasks => void sizes.push(tasks.length), 3, maxWaitMs, quietMs);
			pushed(batcher, 0, 1);
			await sleep(10);
			pushed(batcher, 1, 4);
			expect(sizes).toEqual([]);
			await sleep(60);
			expect(sizes).toEqual([5]);
		});

		it("keeps a batch open while deliveries keep coming, up to maxWaitMs from its first", async () => {
			const sizes: number[] = [];
			const { batcher } = batcherWith(async tasks => void sizes.push(tasks.length), 3, 150, 40);
			const started = performance.now();
			let writtenAfterMs = 0;
			for (let n = 0; n < 20; n++) {
				pushed(batcher, n, 1);
				if (sizes.length > 0 && !writtenAfterMs) writtenAfterMs = performance.now() - started;
				await sleep(10);
			}
			await batcher.drain();
			// Deliveries 10 ms apart never leave the batch quiet for 40 ms: it is written at 150 ms.
			expect(writtenAfterMs).toBeGreaterThanOrEqual(140);
			expect(sizes[0]).toBeGreaterThanOrEqual(10);
			expect(sizes.reduce((sum, size) => sum + size)).toBe(20);
		});

		it("writes a full batch at once, and what piled up behind it without waiting again", async () => {
			const sizes: number[] = [];
			const { batcher } = batcherWith(
				async tasks => {
					sizes.push(tasks.length);
					await sleep(10);
				},
				3,
				60_000,
			);
			pushed(batcher, 0, 50);
			expect(sizes).toEqual([50]);
			pushed(batcher, 50, 120);
			await sleep(100);
			expect(sizes).toEqual([50, 50, 50, 20]);
		});

		it("counts deliveries that waited unread while the process was busy as arrivals, not as a pause", async () => {
			const sizes: number[] = [];
			const { batcher } = batcherWith(async tasks => void sizes.push(tasks.length), 3, 60_000, 30);
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
				await sleep(40);
				expect(sizes).toEqual([2]);
			} finally {
				client.destroy();
				server.close();
			}
		});

		it("does not hold back a lingering batch when drained", async () => {
			const sizes: number[] = [];
			const { batcher, settled } = batcherWith(async tasks => void sizes.push(tasks.length), 3, 60_000);
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
		expect(settled).toEqual([{ id: "retry", outcome: "stored", reason: undefined }]);
	});

	it("dead-letters a batch after maxAttempts with the last error as reason", async () => {
		const { batcher, settled } = batcherFailingWith("disk full", 2);
		batcher.push(newTask("doomed", "go"), "doomed");
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(settled).toEqual([{ id: "doomed", outcome: "dead-letter", reason: "store failed 2 times: disk full" }]);
	});

	it("releases a failing batch for redelivery when drained mid-retry", async () => {
		const { batcher, settled } = batcherFailingWith("store is away", 100);
		batcher.push(newTask("released", "go"), "released");
		await new Promise(resolve => setTimeout(resolve, 10));
		await batcher.drain();
		expect(settled).toEqual([{ id: "released", outcome: "released", reason: undefined }]);
	});
});
