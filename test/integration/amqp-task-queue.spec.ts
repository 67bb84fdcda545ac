import type { ChildProcess } from "node:child_process";
import { Socket } from "node:net";
import path from "node:path";
import type { ChannelModel, ConfirmChannel, Message } from "amqplib";
import type { AmqpTaskQueue } from "../../lib/queue/amqp-task-queue";
import { newTask, type QueuedTask } from "../../lib/task";
import { QueueUnavailableError } from "../../lib/errors";
import { deadLetterQueueOf } from "../../lib/queue/task-queue";
import { DELIVERY_LIMIT } from "../../lib/queue/task-queue-declarations";
import { spawnTracked } from "../support/child-processes";
import { eventually } from "../support/eventually";
import { connectOrExplain, management, openQueue, queueCounters, RABBIT_URL, scratchQueueName } from "../support/rabbitmq";

describe("AmqpTaskQueue against RabbitMQ", () => {
	let inspector: ChannelModel;
	const opened: AmqpTaskQueue[] = [];
	const queueNames: string[] = [];

	const scratch = () => {
		const name = scratchQueueName();
		queueNames.push(name, deadLetterQueueOf(name));
		return name;
	};
	const open = (...args: Parameters<typeof openQueue>) => {
		const queue = openQueue(...args);
		opened.push(queue);
		return queue;
	};
	/** A queue on a fresh scratch name, connected. */
	const connectedQueue = async () => {
		const name = scratch();
		const queue = open(name);
		await queue.whenConnected(5000);
		return { name, queue };
	};
	const connectedQuorumQueue = async () => {
		const name = scratch();
		const queue = open(name, { queueType: "quorum" });
		await queue.whenConnected(5000);
		return { name, queue };
	};
	const depthOf = async (queue: string) => {
		const channel = await inspector.createChannel();
		try {
			return (await channel.checkQueue(queue)).messageCount;
		} finally {
			await channel.close();
		}
	};

	beforeAll(async () => {
		inspector = await connectOrExplain();
	});
	afterAll(async () => {
		await Promise.all(opened.map(queue => queue.close()));
		if (!inspector) return;
		const channel = await inspector.createChannel();
		for (const name of queueNames) await channel.deleteQueue(name);
		await inspector.close();
	});

	it("holds a confirmed task durably until a consumer takes it", async () => {
		const { name, queue: producer } = await connectedQueue();
		const task = newTask("confirmed", "flask");
		await producer.publish(task);
		expect(await depthOf(name)).toBe(1);

		const received: QueuedTask[] = [];
		const consumer = await open(name).consume(async tasks => void received.push(...tasks));
		await eventually("the task consumed", async () => (received.length === 1 ? true : undefined), 5000);
		await consumer.stop();
		expect(received).toEqual([task]);
		expect(await depthOf(name)).toBe(0);
	});

	it("sends publishes made in separate event-loop turns within a millisecond as one socket write", async () => {
		const { name, queue: producer } = await connectedQueue();
		await producer.publish(newTask("warm-up", "go"));
		// Counts the writes of every socket of this process that goes to RabbitMQ's port.
		const rabbitPort = Number(new URL(RABBIT_URL).port || 5672);
		const prototype = Socket.prototype as unknown as Record<"_write" | "_writev", (...args: unknown[]) => unknown>;
		const original = { _write: prototype._write, _writev: prototype._writev };
		let writes = 0;
		for (const method of ["_write", "_writev"] as const) {
			prototype[method] = function (this: Socket, ...args: unknown[]) {
				if (this.remotePort === rabbitPort) writes++;
				return original[method].apply(this, args);
			};
		}
		try {
			const confirmed: Promise<void>[] = [];
			for (let n = 0; n < 10; n++) {
				confirmed.push(producer.publish(newTask(`turn ${n}`, "go")));
				await new Promise(resolve => setImmediate(resolve));
			}
			await Promise.all(confirmed);
		} finally {
			Object.assign(prototype, original);
		}
		// One write per publish without the window. A window closes after 1 ms, and on a loaded
		// machine ten turns can span several windows: fewer writes than publishes is the point.
		expect(writes).toBeLessThan(10);
		expect(await depthOf(name)).toBe(11);
	});

	it("publishes persistent JSON messages whose messageId is the task id", async () => {
		const { name, queue: producer } = await connectedQueue();
		const task = newTask("inspect me", "go");
		await producer.publish(task);
		const channel = await inspector.createChannel();
		const message = await channel.get(name, { noAck: true });
		await channel.close();
		expect(message).not.toBe(false);
		if (!message) return;
		expect(message.properties).toMatchObject({ deliveryMode: 2, contentType: "application/json", messageId: task.id });
		expect(JSON.parse(message.content.toString())).toEqual(task);
	});

	it("acks only after the handler's write succeeds", async () => {
		const { name, queue: producer } = await connectedQueue();
		await producer.publish(newTask("not yet stored", "go"));

		let releaseWrite: () => void = () => undefined;
		const writeDone = new Promise<void>(resolve => (releaseWrite = resolve));
		const consumer = await open(name).consume(() => writeDone);
		await queueCounters(name, counters => counters.messages_unacknowledged === 1);

		releaseWrite();
		await queueCounters(name, counters => counters.messages_unacknowledged === 0 && counters.messages_ready === 0);
		await consumer.stop();
	});

	it("keeps its connection, and publishing, when one of its consumers stops", async () => {
		const { name, queue } = await connectedQueue();
		const consumer = await queue.consume(async () => undefined);
		await consumer.stop();
		await new Promise(resolve => setTimeout(resolve, 200));
		expect(queue.isConnected()).toBe(true);
		await queue.publish(newTask("still publishing", "go"));
		expect(await depthOf(name)).toBe(1);
	});

	it("leaves a task unacked while its write keeps failing, and puts it back on stop", async () => {
		const name = scratch();
		const producer = open(name);
		await producer.whenConnected(5000);
		await producer.publish(newTask("store is down", "go"));
		let attempts = 0;
		const consumer = await producer.consume(async () => {
			attempts++;
			throw new Error("store is down");
		});
		await eventually("three store attempts", async () => (attempts >= 3 ? true : undefined), 5000);
		await consumer.stop();
		expect(await depthOf(name)).toBe(1);
	});

	it("redelivers the tasks of a consumer that dies before acking to another consumer", async () => {
		const { name, queue: producer } = await connectedQueue();
		const tasks = [newTask("orphan 1", "go"), newTask("orphan 2", "flask")];
		for (const task of tasks) await producer.publish(task);

		// One process (no tsx wrapper), so that SIGKILL takes the consumer itself down.
		const doomed: ChildProcess = spawnTracked(process.execPath, ["--import", "tsx", path.join(__dirname, "fixtures/hanging-consumer.ts"), name], {
			stdio: ["ignore", "pipe", "inherit"],
		});
		const seenByDoomed = await new Promise<string[]>((resolve, reject) => {
			let output = "";
			doomed.stdout?.on("data", chunk => {
				output += chunk;
				const ids = output
					.split("\n")
					.filter(Boolean)
					.flatMap(line => JSON.parse(line) as string[]);
				if (ids.length === tasks.length) resolve(ids);
			});
			doomed.on("exit", code => reject(new Error(`consumer exited early with ${code}`)));
		});
		expect(seenByDoomed.sort()).toEqual(tasks.map(task => task.id).sort());
		doomed.kill("SIGKILL");

		const redelivered: QueuedTask[] = [];
		const survivor = await open(name).consume(async batch => void redelivered.push(...batch));
		await eventually("both tasks redelivered", async () => (redelivered.length === tasks.length ? true : undefined), 10_000);
		await survivor.stop();
		expect(redelivered.map(task => task.id).sort()).toEqual(tasks.map(task => task.id).sort());
	});

	it("dead-letters an unreadable message with the reason and keeps consuming behind it", async () => {
		const name = scratch();
		const reasons: string[] = [];
		const producer = open(name, { onDeadLettered: reason => void reasons.push(reason) });
		await producer.whenConnected(5000);
		const side = await inspector.createConfirmChannel();
		side.sendToQueue(name, Buffer.from("this is not JSON"), { persistent: true, messageId: "poison-1" });
		await side.waitForConfirms();
		await side.close();
		const good = newTask("behind the poison", "go");
		await producer.publish(good);

		const received: QueuedTask[] = [];
		const consumer = await producer.consume(async tasks => void received.push(...tasks));
		await eventually("the good task consumed", async () => (received.length === 1 ? true : undefined), 5000);
		await eventually("the poison message dead-lettered", async () => ((await depthOf(deadLetterQueueOf(name))) === 1 ? true : undefined), 5000);
		await consumer.stop();
		expect(received).toEqual([good]);

		const channel = await inspector.createChannel();
		const dead = await channel.get(deadLetterQueueOf(name), { noAck: true });
		await channel.close();
		expect(dead && dead.content.toString()).toBe("this is not JSON");
		expect(dead && dead.properties.headers?.["x-dead-reason"]).toMatch(/^unreadable: body is not JSON/);
		expect(dead && dead.properties.messageId).toBe("poison-1");
		expect(reasons).toEqual(["unreadable"]);
	});

	it("tells of a task the store refused alone, once RabbitMQ confirmed its dead-letter copy, and acks the others", async () => {
		const name = scratch();
		const reasons: string[] = [];
		const queue = open(name, { onDeadLettered: reason => void reasons.push(reason) });
		await queue.whenConnected(5000);
		const good = newTask("stored", "go");
		const refused = newTask("refused", "go");
		await queue.publish(good);
		await queue.publish(refused);
		const consumer = await queue.consume(async tasks =>
			tasks.filter(task => task === refused || task.id === refused.id).map(task => ({ task, reason: "duplicate_id" as const, detail: "taken" })),
		);
		await eventually("the task dead-lettered", async () => (reasons.length === 1 ? true : undefined), 5000);
		await consumer.stop();
		expect(reasons).toEqual(["duplicate_id"]);
		expect(await depthOf(deadLetterQueueOf(name))).toBe(1);
		expect(await depthOf(name)).toBe(0);
	});

	it("lists dead letters without taking them, and replays them to the task queue without their dead-letter headers", async () => {
		const { name, queue } = await connectedQueue();
		const side = await inspector.createConfirmChannel();
		const bodies = ["not JSON 1", "not JSON 2", "not JSON 3"];
		for (const [n, body] of bodies.entries()) {
			side.sendToQueue(deadLetterQueueOf(name), Buffer.from(body), {
				persistent: true,
				messageId: `dead-${n}`,
				headers: {
					"x-dead-reason": "unreadable: body is not JSON",
					"x-dead-at": "2026-01-01T00:00:00.000Z",
					"x-original-queue": name,
					"x-redeliveries": 2,
					kept: "yes",
				},
			});
		}
		await side.waitForConfirms();
		await side.close();
		const listed = await queue.deadLetters(2);
		expect(listed).toEqual([
			{ messageId: "dead-0", reason: "unreadable: body is not JSON", bytes: 10, head: "not JSON 1", deadAt: "2026-01-01T00:00:00.000Z" },
			expect.objectContaining({ messageId: "dead-1" }),
		]);
		expect(await eventually("the listed letters back", async () => ((await depthOf(deadLetterQueueOf(name))) === 3 ? true : undefined), 5000)).toBe(true);
		expect(await queue.replayDeadLetters(2)).toBe(2);
		expect(await depthOf(deadLetterQueueOf(name))).toBe(1);
		const channel = await inspector.createChannel();
		const replayed = await channel.get(name, { noAck: true });
		await channel.close();
		expect(replayed && replayed.content.toString()).toBe("not JSON 1");
		expect(replayed && replayed.properties.messageId).toBe("dead-0");
		expect(replayed && replayed.properties.headers).toEqual({ kept: "yes" });
	});

	it("refuses to publish while RabbitMQ cannot be reached, without waiting", async () => {
		const unreachable = open(scratch(), { urls: ["amqp://guest:guest@127.0.0.1:1/%2F"] });
		const started = Date.now();
		await expect(unreachable.publish(newTask("nowhere", "go"))).rejects.toBeInstanceOf(QueueUnavailableError);
		expect(Date.now() - started).toBeLessThan(500);
		expect(unreachable.isConnected()).toBe(false);
	});

	it("reconnects and resumes publishing and consuming after the broker drops the connection", async () => {
		const { name, queue } = await connectedQueue();
		const received: QueuedTask[] = [];
		const consumer = await queue.consume(async tasks => void received.push(...tasks));

		const connections = await eventually(
			"the queue's connection listed",
			async () => {
				const all = await management<{ name: string; client_properties: { connection_name?: string } }[]>("/connections");
				const ours = all.filter(connection => connection.client_properties.connection_name === `test ${name}`);
				return ours.length > 0 ? ours : undefined;
			},
			10_000,
		);
		for (const connection of connections) await management(`/connections/${encodeURIComponent(connection.name)}`, "DELETE");
		await eventually("the dropped connection noticed", async () => (queue.isConnected() ? undefined : true), 5000);

		await queue.whenConnected(10_000);
		const after = newTask("after reconnect", "flask");
		await queue.publish(after);
		await eventually(
			"the task published after reconnecting consumed",
			async () => (received.some(task => task.id === after.id) ? true : undefined),
			10_000,
		);
		await consumer.stop();
	});

	it("fails over along its list of nodes, past one that cannot be reached", async () => {
		const name = scratch();
		const queue = open(name, { urls: ["amqp://guest:guest@127.0.0.1:1/%2F", RABBIT_URL] });
		await queue.whenConnected(2000);
		await queue.publish(newTask("through the second node", "go"));
		expect(await depthOf(name)).toBe(1);
	});

	it("declares a quorum task queue that dead-letters a message past its delivery limit, at least once", async () => {
		const name = scratch();
		const queue = open(name, { queueType: "quorum" });
		await queue.whenConnected(5000);
		const info = await eventually(
			"the queue listed",
			() => management<{ type: string; arguments: Record<string, unknown> }>(`/queues/%2F/${encodeURIComponent(name)}`).catch(() => undefined),
			10_000,
		);
		expect(info.type).toBe("quorum");
		expect(info.arguments).toMatchObject({
			"x-delivery-limit": DELIVERY_LIMIT,
			"x-dead-letter-routing-key": deadLetterQueueOf(name),
			"x-dead-letter-strategy": "at-least-once",
			"x-overflow": "reject-publish",
		});
		expect((await management<{ type: string }>(`/queues/%2F/${encodeURIComponent(deadLetterQueueOf(name))}`)).type).toBe("quorum");

		// A message that never gets acked, as one that crashes every worker that takes it.
		const task = newTask("poison by crashes", "flask");
		await queue.publish(task);
		const channel = await inspector.createChannel();
		try {
			for (let delivery = 1; delivery <= DELIVERY_LIMIT + 1; delivery++) {
				const message = await eventually(`delivery ${delivery}`, async () => (await channel.get(name)) || undefined, 5000);
				channel.nack(message, false, true);
			}
			const dead = await eventually(
				"the message dead-lettered",
				async () => (await channel.get(deadLetterQueueOf(name), { noAck: true })) || undefined,
				5000,
			);
			expect(dead.properties.messageId).toBe(task.id);
			expect(await depthOf(name)).toBe(0);
		} finally {
			await channel.close();
		}
	});

	it("reads a message a quorum queue handed out before at once, and dead-letters it as poison at 5 returns by the queue's own count", async () => {
		const name = scratch();
		const reasons: string[] = [];
		const queue = open(name, { queueType: "quorum", onDeadLettered: reason => void reasons.push(reason) });
		await queue.whenConnected(5000);
		const returnedOnce = newTask("returned once", "go");
		const poison = newTask("returned five times", "flask");
		await queue.publish(returnedOnce);
		await queue.publish(poison);
		const channel = await inspector.createChannel();
		try {
			// A consumer that dies holding them: returnedOnce comes back at least once, poison at least
			// five times. A quorum queue puts a returned message back at its head, so one whose
			// returns are done is held until the other's are, then both go back together.
			const returnsLeft = new Map([
				[returnedOnce.id, 1],
				[poison.id, 5],
			]);
			const held: Message[] = [];
			while ([...returnsLeft.values()].some(left => left > 0)) {
				const message = await eventually("a delivery", async () => (await channel.get(name)) || undefined, 5000);
				const id = message.properties.messageId as string;
				const left = returnsLeft.get(id) ?? 0;
				if (left > 0) {
					returnsLeft.set(id, left - 1);
					channel.nack(message, false, true);
				} else held.push(message);
			}
			for (const message of held) channel.nack(message, false, true);
		} finally {
			await channel.close();
		}
		const stored: QueuedTask[] = [];
		const consumer = await queue.consume(async batch => void stored.push(...batch));
		await eventually(
			"the returned task stored and the poison dead-lettered",
			async () => (stored.length === 1 && reasons.length === 1 ? true : undefined),
			10_000,
		);
		await consumer.stop();
		expect(stored.map(task => task.id)).toEqual([returnedOnce.id]);
		expect(reasons).toEqual(["poison"]);
		expect(await depthOf(name)).toBe(0);
	});

	it("publishes again on a new channel when a quorum queue's channel confirms nothing, and the queue holds the task under its one id", async () => {
		const name = scratch();
		const queue = open(name, { queueType: "quorum" });
		await queue.whenConnected(5000);
		const internals = queue as unknown as { publisher: ConfirmChannel };
		const stalled = internals.publisher;
		// The channel's confirms go nowhere, as on RabbitMQ 3.10 when it is bound to a dead leader.
		stalled.removeAllListeners("ack");
		const task = newTask("past a stalled channel", "go");
		await queue.publish(task);
		expect(internals.publisher).not.toBe(stalled);

		// Both copies reached the queue: the store inserts the id once (task-store.spec.ts).
		const received: QueuedTask[] = [];
		const consumer = await queue.consume(async tasks => void received.push(...tasks));
		await eventually("both copies consumed", async () => (received.length === 2 ? true : undefined), 5000);
		await consumer.stop();
		expect(received.map(copy => copy.id)).toEqual([task.id, task.id]);
	});

	it("consumes again on a new channel when a quorum queue's consumer gets nothing while tasks wait, and not while the queue is empty", async () => {
		const name = scratch();
		const queue = open(name, { queueType: "quorum" });
		await queue.whenConnected(5000);
		const received: QueuedTask[] = [];
		const consumer = await queue.consume(async tasks => void received.push(...tasks));
		const internals = consumer as unknown as { channel: ConfirmChannel; consumerTag: string };
		// A channel that has delivered something is left alone while the queue is empty.
		const first = newTask("before the stall", "go");
		await queue.publish(first);
		await eventually("the first task consumed", async () => (received.length === 1 ? true : undefined), 5000);
		const idle = internals.channel;
		await new Promise(resolve => setTimeout(resolve, 1500));
		expect(internals.channel).toBe(idle);

		// RabbitMQ delivers nothing more to the channel, as to a consumer bound to a dead leader,
		// and the consumer is not told.
		await idle.cancel(internals.consumerTag);
		const task = newTask("past a stalled consumer", "go");
		await queue.publish(task);
		await eventually("the task consumed on a new channel", async () => (received.length === 2 ? true : undefined), 5000);
		await consumer.stop();
		expect(received).toEqual([first, task]);
		expect(internals.channel).not.toBe(idle);
		expect(queue.isConnected()).toBe(true);
	});

	it("replaces a quorum queue consumer's new channel that delivers nothing, though the queue is empty (other consumers may keep it so)", async () => {
		const { queue } = await connectedQuorumQueue();
		const consumer = await queue.consume(async () => undefined);
		const internals = consumer as unknown as { channel: ConfirmChannel; consumerTag: string };
		const blind = internals.channel;
		await blind.cancel(internals.consumerTag);
		await eventually("a new channel", async () => (internals.channel !== blind ? true : undefined), 3000);
		await consumer.stop();
	});

	it("keeps a quorum queue's consumer on its channel while it holds a delivery, though tasks wait behind it", async () => {
		const name = scratch();
		const queue = open(name, { queueType: "quorum", prefetch: 1 });
		await queue.whenConnected(5000);
		for (const title of ["held", "waiting"]) await queue.publish(newTask(title, "go"));
		let releaseWrite: () => void = () => undefined;
		const writeDone = new Promise<void>(resolve => (releaseWrite = resolve));
		const consumer = await queue.consume(() => writeDone);
		const internals = consumer as unknown as { channel: ConfirmChannel };
		const holding = internals.channel;
		await new Promise(resolve => setTimeout(resolve, 1500));
		expect(internals.channel).toBe(holding);
		releaseWrite();
		await consumer.stop();
	});

	it("gives up for good, with an error that says what to do, when the queue exists with another type", async () => {
		const name = scratch();
		const channel = await inspector.createChannel();
		await channel.assertQueue(name, { durable: true });
		await channel.close();
		const fatal: Error[] = [];
		const queue = open(name, { queueType: "quorum", onFatal: err => fatal.push(err) });
		await eventually("the mismatch reported", async () => (fatal.length > 0 ? true : undefined), 5000);
		expect(fatal[0].message).toMatch(
			new RegExp(
				`queue "${name.replace(/\./g, "\\.")}" declared differently from RABBIT_QUEUE_TYPE=quorum .*PRECONDITION_FAILED - inequivalent arg.*set RABBIT_QUEUE_TYPE to the queue's type`,
			),
		);
		expect(queue.isConnected()).toBe(false);
		await expect(queue.whenConnected(300)).rejects.toBeInstanceOf(QueueUnavailableError);
	});
});
