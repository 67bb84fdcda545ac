import { DeliveryBatcher, type Outcome } from "../../lib/delivery-batcher";
import { newTask, type QueuedTask } from "../../lib/task";

function batcherWith(handler: (tasks: QueuedTask[]) => Promise<void>, maxAttempts = 3) {
	const settled: { id: string; outcome: Outcome; reason?: string }[] = [];
	const batcher = new DeliveryBatcher<string>({
		handler,
		maxBatch: 50,
		maxAttempts,
		retryDelayMs: () => 1,
		onError: () => undefined,
		settle: (id, outcome, reason) => settled.push({ id, outcome, reason }),
	});
	return { batcher, settled };
}

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
		const { batcher, settled } = batcherWith(async () => {
			throw new Error("disk full");
		}, 2);
		batcher.push(newTask("doomed", "go"), "doomed");
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(settled).toEqual([{ id: "doomed", outcome: "dead-letter", reason: "store failed 2 times: disk full" }]);
	});

	it("releases a failing batch for redelivery when drained mid-retry", async () => {
		const { batcher, settled } = batcherWith(async () => {
			throw new Error("store is away");
		}, 100);
		batcher.push(newTask("released", "go"), "released");
		await new Promise(resolve => setTimeout(resolve, 10));
		await batcher.drain();
		expect(settled).toEqual([{ id: "released", outcome: "released", reason: undefined }]);
	});
});
