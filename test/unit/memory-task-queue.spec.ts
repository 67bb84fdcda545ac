import { MemoryTaskQueue } from "../../lib/queue/memory-task-queue";
import { newTask, type QueuedTask } from "../../lib/task";
import { SILENT_LOGGER } from "../support/silent-logger";

const queueOf = (prefetch = 10, maxAttempts = 3) =>
	new MemoryTaskQueue({ queue: "task_queue", prefetch, maxAttempts, retryDelayMs: () => 1, logger: SILENT_LOGGER });

describe("MemoryTaskQueue", () => {
	it("holds tasks until a consumer arrives", async () => {
		const queue = queueOf();
		await queue.publish(newTask("waiting", "go"));
		expect(await queue.depth()).toMatchObject({ messages: 1, consumers: 0 });
		const seen: QueuedTask[] = [];
		const consumer = await queue.consume(async tasks => void seen.push(...tasks));
		await consumer.stop();
		expect(seen.map(task => task.title)).toEqual(["waiting"]);
		expect(await queue.depth()).toMatchObject({ messages: 0, consumers: 0 });
	});

	it("spreads tasks over competing consumers, each within its prefetch", async () => {
		const queue = queueOf(5);
		const seenBy: number[][] = [[], []];
		let inHand = 0;
		let mostInHand = 0;
		const consumers = await Promise.all(
			seenBy.map(seen =>
				queue.consume(async tasks => {
					inHand += tasks.length;
					mostInHand = Math.max(mostInHand, inHand);
					await new Promise(resolve => setTimeout(resolve, 2));
					seen.push(tasks.length);
					inHand -= tasks.length;
				}),
			),
		);
		for (let n = 0; n < 100; n++) await queue.publish(newTask(`t${n}`, "go"));
		while ((await queue.depth()).messages > 0) await new Promise(resolve => setTimeout(resolve, 5));
		await Promise.all(consumers.map(consumer => consumer.stop()));
		expect(seenBy.every(seen => seen.length > 0)).toBe(true);
		expect(seenBy.flat().reduce((sum, size) => sum + size, 0)).toBe(100);
		expect(mostInHand).toBeLessThanOrEqual(10);
	});

	it("gives a stopped consumer's unfinished tasks to another consumer", async () => {
		const queue = queueOf(10, 1000);
		const failing = await queue.consume(async () => {
			throw new Error("store is away");
		});
		await queue.publish(newTask("handed over", "go"));
		await new Promise(resolve => setTimeout(resolve, 5));
		await failing.stop();
		const seen: string[] = [];
		const healthy = await queue.consume(async tasks => void seen.push(...tasks.map(task => task.title)));
		await new Promise(resolve => setTimeout(resolve, 5));
		await healthy.stop();
		expect(seen).toEqual(["handed over"]);
		expect((await queue.depth()).deadLettered).toBe(0);
	});
});
