import { MemoryTaskQueue } from "../../../../lib/queue/memory-task-queue";
import { newTask, type QueuedTask } from "../../../../lib/task";
import { SILENT_LOGGER } from "../../../support/silent-logger";

const queueOf = (prefetch = 10) => new MemoryTaskQueue({ queue: "task_queue", prefetch, retryDelayMs: () => 1, logger: SILENT_LOGGER });

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
		const queue = queueOf(10);
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

	it("lists its dead letters with their reason and moves them back on replay", async () => {
		const queue = queueOf(10);
		let refuse = true;
		const consumer = await queue.consume(async tasks =>
			refuse ? tasks.map(task => ({ task, reason: "duplicate_id" as const, detail: "taken" })) : undefined,
		);
		const task = newTask("refused, then replayed", "go");
		await queue.publish(task);
		await new Promise(resolve => setTimeout(resolve, 5));
		expect(await queue.deadLetters(10)).toEqual([expect.objectContaining({ messageId: task.id, reason: "duplicate_id: taken" })]);
		refuse = false;
		expect(await queue.replayDeadLetters(10)).toBe(1);
		await new Promise(resolve => setTimeout(resolve, 5));
		await consumer.stop();
		expect(await queue.deadLetters(10)).toEqual([]);
		expect(await queue.depth()).toMatchObject({ messages: 0, deadLettered: 0 });
	});
});
