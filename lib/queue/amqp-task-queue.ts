import { setTimeout as sleep } from "node:timers/promises";
import type { Writable } from "node:stream";
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from "amqplib";
import { AmqpConsumer } from "./amqp-consumer";
import { backoffMs } from "./backoff";
import { encodeTaskMessage, type QueuedTask } from "../task";
import {
	deadLetterQueueOf,
	QueueUnavailableError,
	type QueueDepth,
	type TaskBatchHandler,
	type TaskConsumer,
	type DeadLetterListener,
	type QueueLogger,
	type TaskQueue,
} from "./task-queue";

export interface AmqpQueueOptions {
	url: string;
	queue: string;
	/** Unacknowledged deliveries per consumer; a store batch holds up to half of them. */
	prefetch: number;
	/** Longest a short store batch waits for more deliveries (BatcherOptions.maxWaitMs). */
	batchWaitMs?: number;
	publishTimeoutMs: number;
	maxAttempts: number;
	/** Shown in the RabbitMQ management UI's connection list. */
	connectionName: string;
	logger: QueueLogger;
	reconnectDelayMs?: (attempt: number) => number;
	retryDelayMs?: (attempt: number) => number;
	/** Told of each message once RabbitMQ has confirmed its dead-letter copy. */
	onDeadLettered?: DeadLetterListener;
}

/**
 * Publishes of this long share one socket write: amqplib writes each publish on its own, and
 * each write costs the gateway a system call and RabbitMQ a read of its own. The delay is
 * below a millisecond or two on the answer, far inside the confirm's own round trip.
 */
const PUBLISH_WINDOW_MS = 1;

/** amqplib's ChannelModel keeps its socket on the connection it wraps. */
function socketOf(connection: ChannelModel): Writable {
	return (connection as unknown as { connection: { stream: Writable } }).connection.stream;
}

// At most 1 s apart: while RabbitMQ is away the gateways answer 503, and once it is back they
// go on doing so until their next attempt.
const defaultReconnectDelay = (attempt: number) => backoffMs(attempt, 1000);

/**
 * The task queue on RabbitMQ (amqplib 0.10, which does not reconnect by itself).
 *
 * One connection per process: a confirm channel for publishing and one channel per consumer.
 * When the connection or a channel fails, everything is rebuilt with backoff and consumers
 * resume; deliveries of the lost channel are left to RabbitMQ to redeliver.
 */
export class AmqpTaskQueue implements TaskQueue {
	private connection: ChannelModel | null = null;
	private publisher: ConfirmChannel | null = null;
	private readonly consumers = new Set<AmqpConsumer>();
	/** Ids of mandatory publishes that RabbitMQ returned as unroutable. */
	private readonly returned = new Set<string>();
	private writable = true;
	private publishWindowOpen = false;
	private drainWaiters: (() => void)[] = [];
	private connectedWaiters: (() => void)[] = [];
	private reconnecting: Promise<void> | null = null;
	private closed = false;
	readonly deadLetterQueue: string;

	constructor(readonly options: AmqpQueueOptions) {
		this.deadLetterQueue = deadLetterQueueOf(options.queue);
	}

	/** Starts connecting in the background; the queue is usable once `isConnected()`. */
	start(): void {
		this.reconnect();
	}

	whenConnected(timeoutMs: number): Promise<void> {
		if (this.isConnected()) return Promise.resolve();
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new QueueUnavailableError(`RabbitMQ not reached within ${timeoutMs} ms`)), timeoutMs);
			this.connectedWaiters.push(() => {
				clearTimeout(timer);
				resolve();
			});
		});
	}

	isConnected(): boolean {
		return this.publisher !== null;
	}

	async publish(task: QueuedTask): Promise<void> {
		const deadline = Date.now() + this.options.publishTimeoutMs;
		while (this.publisher && !this.writable) await this.waitForDrain(deadline);
		const publisher = this.publisher;
		if (!publisher) throw new QueueUnavailableError("RabbitMQ is not connected");

		return new Promise<void>((resolve, reject) => {
			const timer = setTimeout(
				() => reject(new QueueUnavailableError(`RabbitMQ did not confirm the task within ${this.options.publishTimeoutMs} ms`)),
				Math.max(deadline - Date.now(), 1),
			);
			const confirmed = (err: unknown) => {
				clearTimeout(timer);
				if (err) reject(new QueueUnavailableError("RabbitMQ did not accept the task"));
				else if (this.returned.delete(task.id)) reject(new QueueUnavailableError(`queue "${this.options.queue}" is missing`));
				else resolve();
			};
			try {
				this.openPublishWindow();
				// false means the socket buffer is full: later publishes wait for "drain".
				this.writable = publisher.publish("", this.options.queue, encodeTaskMessage(task), {
					persistent: true,
					mandatory: true,
					contentType: "application/json",
					messageId: task.id,
					timestamp: Math.floor(Date.now() / 1000),
				}, confirmed);
			} catch (err) {
				confirmed(err);
			}
		});
	}

	async consume(handler: TaskBatchHandler): Promise<TaskConsumer> {
		const consumer = new AmqpConsumer(this.options, handler, () => this.consumers.delete(consumer));
		this.consumers.add(consumer);
		if (this.connection) await consumer.attach(this.connection);
		return consumer;
	}

	async depth(): Promise<QueueDepth> {
		if (!this.publisher) throw new QueueUnavailableError("RabbitMQ is not connected");
		const [queue, dead] = await Promise.all([
			this.publisher.checkQueue(this.options.queue),
			this.publisher.checkQueue(this.deadLetterQueue),
		]);
		return {
			queue: this.options.queue,
			messages: queue.messageCount,
			consumers: queue.consumerCount,
			deadLettered: dead.messageCount,
		};
	}

	async close(): Promise<void> {
		this.closed = true;
		await Promise.all([...this.consumers].map(consumer => consumer.stop()));
		const connection = this.connection;
		this.forget(connection);
		await connection?.close().catch(() => undefined);
	}

	private reconnect(): void {
		if (this.reconnecting || this.closed) return;
		this.reconnecting = (async () => {
			const delay = this.options.reconnectDelayMs ?? defaultReconnectDelay;
			for (let attempt = 1; !this.closed; attempt++) {
				try {
					await this.connect();
					if (attempt > 1) this.options.logger.info(`RabbitMQ connection restored after ${attempt} attempts`);
					return;
				} catch (err) {
					this.options.logger.warn(`RabbitMQ connection attempt ${attempt} failed: ${(err as Error).message}`);
					await sleep(delay(attempt));
				}
			}
		})().finally(() => (this.reconnecting = null));
	}

	private async connect(): Promise<void> {
		const connection = await amqp.connect(this.options.url, {
			clientProperties: { connection_name: this.options.connectionName },
		});
		connection.on("error", err => this.options.logger.warn(`RabbitMQ connection error: ${err.message}`));
		connection.on("close", () => this.onConnectionLost(connection));
		try {
			const publisher = await connection.createConfirmChannel();
			publisher.on("error", err => this.options.logger.warn(`RabbitMQ publish channel error: ${err.message}`));
			// A channel closed by an error takes the whole connection down with it: rebuild both.
			publisher.on("close", () => connection.close().catch(() => undefined));
			publisher.on("return", (message: ConsumeMessage) => {
				if (message.properties.messageId) this.returned.add(message.properties.messageId);
			});
			publisher.on("drain", () => this.onDrain());
			await publisher.assertQueue(this.options.queue, { durable: true });
			await publisher.assertQueue(this.deadLetterQueue, { durable: true });
			for (const consumer of this.consumers) await consumer.attach(connection);
			this.connection = connection;
			this.publisher = publisher;
			this.writable = true;
		} catch (err) {
			await connection.close().catch(() => undefined);
			throw err;
		}
		for (const waiter of this.connectedWaiters.splice(0)) waiter();
	}

	private onConnectionLost(connection: ChannelModel): void {
		if (this.connection !== connection) return;
		this.options.logger.warn("RabbitMQ connection lost; reconnecting");
		this.forget(connection);
		this.reconnect();
	}

	private forget(connection: ChannelModel | null): void {
		if (!connection || this.connection !== connection) return;
		this.connection = null;
		this.publisher = null;
		for (const consumer of this.consumers) consumer.detach();
		this.onDrain();
	}

	/** Holds this connection's socket writes until the window closes, then sends them as one. */
	private openPublishWindow(): void {
		if (this.publishWindowOpen || !this.connection) return;
		const socket = socketOf(this.connection);
		socket.cork();
		this.publishWindowOpen = true;
		setTimeout(() => {
			this.publishWindowOpen = false;
			socket.uncork();
		}, PUBLISH_WINDOW_MS);
	}

	private onDrain(): void {
		this.writable = true;
		for (const waiter of this.drainWaiters.splice(0)) waiter();
	}

	private waitForDrain(deadline: number): Promise<void> {
		return new Promise((resolve, reject) => {
			const timer = setTimeout(
				() => reject(new QueueUnavailableError("RabbitMQ is not taking messages fast enough")),
				Math.max(deadline - Date.now(), 1),
			);
			this.drainWaiters.push(() => {
				clearTimeout(timer);
				resolve();
			});
		});
	}
}
