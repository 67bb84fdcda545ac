import type { ChannelModel, ConfirmChannel } from "amqplib";
import { MongoClient } from "mongodb";
import { encodeTaskMessage, newTask, type TaskDocument } from "../../lib/task";
import type { Stack } from "../support/stack";
import { connectOrExplain } from "../support/rabbitmq";
import { gatewaysReady, leaveStackHealthy } from "../support/stack";
import { stackCommand } from "../../scripts/stack-control";
import { watchDeadLetters } from "../support/dead-letters";
import { waitForStored } from "../support/stored-tasks";

/**
 * Messages no worker can turn into a task, published straight to task_queue as a foreign
 * producer could: each must land in task_queue.dead with its reason, fast, while the valid
 * tasks behind it are stored as usual and every worker stays up.
 */

const MARK = `poison-${Date.now().toString(36)}`;
const DEAD_LETTER_WITHIN_MS = 1000;

describe("poison messages on task_queue", () => {
	let stack: Stack;
	let connection: ChannelModel;
	let publisher: ConfirmChannel;
	let mongo: MongoClient;

	beforeAll(async () => {
		stack = await gatewaysReady();
		connection = await connectOrExplain();
		publisher = await connection.createConfirmChannel();
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
	});

	afterAll(async () => {
		await connection?.close();
		await mongo
			?.db(stack.dbName)
			.collection("tasks")
			.deleteMany({ title: { $regex: `^${MARK} ` } });
		await mongo?.close();
		await leaveStackHealthy();
	}, 180_000);

	it(`dead-letters unreadable messages within ${DEAD_LETTER_WITHIN_MS} ms with the reason, and stores the valid tasks behind them`, async () => {
		const poisons = [
			{ id: `${MARK}-not-json`, body: Buffer.from("this is { not JSON"), reason: /^unreadable: body is not JSON/ },
			{ id: `${MARK}-empty-title`, body: Buffer.from('{"title": "   "}'), reason: /^invalid: .*'title'/ },
			// Nested deep enough to overflow the validator's stack, which would take the worker with it.
			{
				id: `${MARK}-deep`,
				body: Buffer.from(`{"title": ${"[".repeat(5000)}${"]".repeat(5000)}}`),
				reason: /^unreadable: body is nested deeper/,
			},
		];
		const behind = Array.from({ length: 20 }, (_, i) => newTask(`${MARK} behind the poison #${i}`, "flask"));
		// A foreign producer's title-only message is a task too: its messageId becomes the task id.
		const foreign = { id: `${MARK}-foreign`, title: `${MARK} title only` };

		const deadLetters = await watchDeadLetters(connection, stack.taskQueue, MARK);
		const publishedAt = Date.now();
		for (const poison of poisons) {
			publisher.sendToQueue(stack.taskQueue, poison.body, { persistent: true, contentType: "application/json", messageId: poison.id });
		}
		for (const task of behind) {
			publisher.sendToQueue(stack.taskQueue, encodeTaskMessage(task), { persistent: true, contentType: "application/json", messageId: task.id });
		}
		publisher.sendToQueue(stack.taskQueue, Buffer.from(JSON.stringify({ title: foreign.title })), { persistent: true, messageId: foreign.id });
		await publisher.waitForConfirms();

		const arrived = await deadLetters
			.waitFor(
				poisons.map(poison => poison.id),
				5000,
			)
			.finally(() => deadLetters.close());
		for (const poison of poisons) {
			const dead = arrived.get(poison.id);
			expect({ id: poison.id, arrived: Boolean(dead) }).toEqual({ id: poison.id, arrived: true });
			if (!dead) continue;
			expect(dead.arrivedAt - publishedAt).toBeLessThan(DEAD_LETTER_WITHIN_MS);
			expect(dead.message.content.equals(poison.body)).toBe(true);
			expect(dead.message.properties.headers).toMatchObject({
				"x-dead-reason": expect.stringMatching(poison.reason),
				"x-original-queue": stack.taskQueue,
			});
		}

		const tasks = mongo.db(stack.dbName).collection<TaskDocument>("tasks");
		const ids = [...behind.map(task => task.id), foreign.id];
		const stored = await waitForStored(tasks, ids, 20_000);
		expect(stored.find(document => document._id === foreign.id)).toMatchObject({ title: foreign.title, source: "external" });
		expect(await tasks.countDocuments({ title: { $regex: `^${MARK} ` } })).toBe(ids.length);
	});

	it("keeps every worker running", async () => {
		await expect(stackCommand("status")).resolves.toBeUndefined();
	});
});
