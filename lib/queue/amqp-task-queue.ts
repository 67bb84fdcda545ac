import { setTimeout as sleep } from "node:timers/promises";
import type { Writable } from "node:stream";
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from "amqplib";
import { AmqpConsumer } from "./amqp-consumer";
import { backoffMs } from "./backoff";
import { listDeadLetters, replayDeadLetters } from "./dead-letter-queue";
import { queueDeclarations } from "./task-queue-declarations";
import type { QueueType } from "../config";
import { QueueMismatchError, QueueUnavailableError } from "../errors";
import { encodeTaskMessage, type QueuedTask } from "../task";
import {
	deadLetterQueueOf,
	type DeadLetter,
	type QueueDepth,
	type TaskBatchHandler,
	type TaskConsumer,
	type DeadLetterListener,
	type QueueLogger,
	type TaskQueue,
} from "./task-queue";

export interface AmqpQueueOptions {
	/** One URL per RabbitMQ node; each (re)connect tries them in turn, from the one after the last used. */
	urls: string[];
	queue: string;
	/** classic, or quorum (replicated; poison messages and dead-lettering by the broker). */
	queueType?: QueueType;
	/** Unacknowledged deliveries per consumer; a store batch holds up to half of them. */
	prefetch: number;
	/** Longest a short store batch waits for more deliveries (BatcherOptions.maxWaitMs). */
	batchWaitMs?: number;
	publishTimeoutMs: number;
	/** Larger message bodies are dead-lettered unread (reason too_large). */
	maxMessageBytes: number;
	/** Shown in the RabbitMQ management UI's connection list. */
	connectionName: string;
	logger: QueueLogger;
	reconnectDelayMs?: (attempt: number) => number;
	retryDelayMs?: (attempt: number) => number;
	/** Told of each message once RabbitMQ has confirmed its dead-letter copy. */
	onDeadLettered?: DeadLetterListener;
	/** Called once the queue can never be used as configured (it exists with other arguments). */
	onFatal?: (err: QueueMismatchError) => void;
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

/** Longest wait for one node's TCP and AMQP handshake before the next node is tried. */
const CONNECT_TIMEOUT_MS = 2000;

/** Shortest life of a publish channel before nacks replace it: a new leader needs a moment to be known. */
const PUBLISHER_RENEWAL_MS = 100;
/** Wait before a nacked task is published again, on the channel that replaced the nacked one. */
const NACK_RETRY_MS = 50;
/**
 * Longest a quorum queue's publish channel may confirm nothing while a publish waits on it. A
 * channel that first publishes in the moment before a new leader is elected (about 0.3 s after the
 * old one died) is bound to the dead leader on RabbitMQ 3.10, and then neither confirms nor nacks
 * until that node is back: seconds, beyond PUBLISH_TIMEOUT_MS. A live channel confirms within
 * milliseconds, and under load keeps confirming something, so a quiet channel counts as stalled
 * and is replaced like a nacking one; 400 ms leaves a client's 2 s room for a few new channels.
 */
const PUBLISH_STALL_MS = 400;

/** AMQP's answer to a declare whose arguments differ from the existing queue's. */
const PRECONDITION_FAILED = 406;

/** host:port of an amqp:// URL, for logs without the credentials. */
function hostOf(url: string): string {
	return new URL(url).host;
}

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
	private renewingPublisher = false;
	private publisherOpenedAt = 0;
	/** When the current publish channel was opened or last confirmed a publish. */
	private publisherConfirmedAt = 0;
	/** RabbitMQ holds the connection's publishes (a resource alarm): no channel confirms then. */
	private blocked = false;
	/** Index in options.urls of the node last tried. */
	private urlIndex = -1;
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

	/**
	 * Resolves once RabbitMQ has confirmed the task. A nack, a quorum queue's stalled channel (see
	 * PUBLISH_STALL_MS), or the channel's replacement is tried again on the renewed channel while
	 * the deadline allows (see renewPublisher). A nacked task was not taken; a stalled one may be
	 * taken later as well, and its id is then still stored once.
	 */
	async publish(task: QueuedTask): Promise<void> {
		const deadline = Date.now() + this.options.publishTimeoutMs;
		for (;;) {
			const outcome = await this.publishOnce(task, deadline);
			if (outcome === "confirmed") return;
			if (Date.now() + NACK_RETRY_MS >= deadline) throw new QueueUnavailableError("RabbitMQ did not accept the task");
			await sleep(NACK_RETRY_MS);
		}
	}

	private async publishOnce(task: QueuedTask, deadline: number): Promise<"confirmed" | "retry"> {
		while (this.publisher && !this.writable) await this.waitForDrain(deadline);
		const publisher = this.publisher;
		if (!publisher) throw new QueueUnavailableError("RabbitMQ is not connected");

		// A classic queue has no leader to be bound to: a new channel would only add copies, and
		// its publishes pay for no stall watch.
		const watchStall = this.options.queueType === "quorum";
		return new Promise((resolve, reject) => {
			let settled = false;
			let stallTimer: NodeJS.Timeout | undefined;
			// Once only: after a stall the task is published again, and the stalled copy's late
			// confirm or error is no answer to the client.
			const settle = (outcome: "confirmed" | "retry" | QueueUnavailableError) => {
				if (settled) return;
				settled = true;
				clearTimeout(timer);
				clearTimeout(stallTimer);
				if (outcome instanceof QueueUnavailableError) reject(outcome);
				else resolve(outcome);
			};
			const timer = setTimeout(
				() => settle(new QueueUnavailableError(`RabbitMQ did not confirm the task within ${this.options.publishTimeoutMs} ms`)),
				Math.max(deadline - Date.now(), 1),
			);
			if (watchStall) {
				const sentAt = Date.now();
				const checkStall = () => {
					const quietMs = this.blocked ? 0 : Date.now() - Math.max(this.publisherConfirmedAt, sentAt);
					if (publisher === this.publisher && quietMs < PUBLISH_STALL_MS) {
						stallTimer = setTimeout(checkStall, PUBLISH_STALL_MS - quietMs);
						return;
					}
					this.renewPublisher(publisher, `RabbitMQ confirmed nothing for ${PUBLISH_STALL_MS} ms`);
					settle("retry");
				};
				stallTimer = setTimeout(checkStall, PUBLISH_STALL_MS);
			}
			const confirmed = (err: unknown) => {
				if (watchStall && !err && publisher === this.publisher) this.publisherConfirmedAt = Date.now();
				// amqplib's words for a basic.nack, as opposed to the channel closing under the publish.
				const nacked = (err as Error | undefined)?.message === "message nacked";
				// The channel was closed because renewPublisher replaced it: the next one is there.
				const replaced = Boolean(err) && this.publisher !== null && this.publisher !== publisher;
				if (nacked) this.renewPublisher(publisher, "RabbitMQ refused tasks");
				if (nacked || replaced) settle("retry");
				else if (err) settle(new QueueUnavailableError("RabbitMQ did not accept the task"));
				else if (this.returned.delete(task.id)) settle(new QueueUnavailableError(`queue "${this.options.queue}" is missing`));
				else settle("confirmed");
			};
			try {
				this.openPublishWindow();
				// false means the socket buffer is full: later publishes wait for "drain".
				this.writable = publisher.publish(
					"",
					this.options.queue,
					encodeTaskMessage(task),
					{
						persistent: true,
						mandatory: true,
						contentType: "application/json",
						messageId: task.id,
						timestamp: Math.floor(Date.now() / 1000),
					},
					confirmed,
				);
			} catch (err) {
				confirmed(err);
			}
		});
	}

	async consume(handler: TaskBatchHandler): Promise<TaskConsumer> {
		const consumer = new AmqpConsumer(
			this.options,
			handler,
			() => this.consumers.delete(consumer),
			() => this.readyMessages(),
		);
		this.consumers.add(consumer);
		if (this.connection) await consumer.attach(this.connection);
		return consumer;
	}

	async depth(): Promise<QueueDepth> {
		if (!this.publisher) throw new QueueUnavailableError("RabbitMQ is not connected");
		const [queue, dead] = await Promise.all([this.publisher.checkQueue(this.options.queue), this.publisher.checkQueue(this.deadLetterQueue)]);
		return {
			queue: this.options.queue,
			messages: queue.messageCount,
			consumers: queue.consumerCount,
			deadLettered: dead.messageCount,
		};
	}

	deadLetters(limit: number): Promise<DeadLetter[]> {
		return listDeadLetters(this.connected(), this.options.queue, limit);
	}

	replayDeadLetters(limit: number): Promise<number> {
		return replayDeadLetters(this.connected(), this.options.queue, limit);
	}

	private connected(): ChannelModel {
		if (!this.connection) throw new QueueUnavailableError("RabbitMQ is not connected");
		return this.connection;
	}

	/** Messages of the task queue waiting for a consumer, asked on the publish channel. */
	private async readyMessages(): Promise<number> {
		if (!this.publisher) throw new QueueUnavailableError("RabbitMQ is not connected");
		return (await this.publisher.checkQueue(this.options.queue)).messageCount;
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
			const { urls } = this.options;
			for (let attempt = 1, round = 1; !this.closed; attempt++) {
				// The node after the last one used first: a node that just went away is tried last.
				this.urlIndex = (this.urlIndex + 1) % urls.length;
				const url = urls[this.urlIndex];
				try {
					await this.connect(url);
					if (attempt > 1) this.options.logger.info(`RabbitMQ connection restored after ${attempt} attempts (${hostOf(url)})`);
					return;
				} catch (err) {
					if (err instanceof QueueMismatchError) {
						this.options.logger.error(err.message);
						this.closed = true;
						this.options.onFatal?.(err);
						return;
					}
					this.options.logger.warn(`RabbitMQ connection attempt ${attempt} to ${hostOf(url)} failed: ${(err as Error).message}`);
					// Every node is tried once at once; only a whole round of failures waits.
					if (attempt % urls.length === 0) await sleep(delay(round++));
				}
			}
		})().finally(() => (this.reconnecting = null));
	}

	private async connect(url: string): Promise<void> {
		const connection = await amqp.connect(url, {
			clientProperties: { connection_name: this.options.connectionName },
			// A node that is gone without a word (a dead host) must not hold up the next one for long.
			timeout: CONNECT_TIMEOUT_MS,
		});
		connection.on("error", err => this.options.logger.warn(`RabbitMQ connection error: ${err.message}`));
		connection.on("close", () => this.onConnectionLost(connection));
		connection.on("blocked", () => (this.blocked = true));
		connection.on("unblocked", () => (this.blocked = false));
		try {
			const publisher = await this.openPublisher(connection);
			for (const { queue, options } of queueDeclarations(this.options.queue, this.options.queueType ?? "classic")) {
				await publisher.assertQueue(queue, options).catch((err: Error & { code?: number }) => {
					throw err.code === PRECONDITION_FAILED ? new QueueMismatchError(queue, this.options.queueType ?? "classic", err.message) : err;
				});
			}
			for (const consumer of this.consumers) await consumer.attach(connection);
			this.connection = connection;
			this.publisher = publisher;
			this.publisherOpenedAt = this.publisherConfirmedAt = Date.now();
			this.writable = true;
			this.blocked = false;
		} catch (err) {
			await connection.close().catch(() => undefined);
			throw err;
		}
		for (const waiter of this.connectedWaiters.splice(0)) waiter();
	}

	private async openPublisher(connection: ChannelModel): Promise<ConfirmChannel> {
		const publisher = await connection.createConfirmChannel();
		publisher.on("error", err => this.options.logger.warn(`RabbitMQ publish channel error: ${err.message}`));
		// A channel closed by an error takes the whole connection down with it: rebuild both.
		// One replaced after nacks (renewPublisher) is closed on purpose and takes nothing along.
		publisher.on("close", () => {
			if (this.publisher === publisher || this.publisher === null) connection.close().catch(() => undefined);
		});
		publisher.on("return", (message: ConsumeMessage) => {
			if (message.properties.messageId) this.returned.add(message.properties.messageId);
		});
		publisher.on("drain", () => this.onDrain());
		return publisher;
	}

	/**
	 * A nack means RabbitMQ refused the task. A quorum queue's channel does so for good, or
	 * answers nothing at all (PUBLISH_STALL_MS), when its first publish went to a leader that had
	 * just died (RabbitMQ 3.10 reads the leader once per channel, from a queue record that the new
	 * leader updates a moment later). A new channel reads it again, so the publisher is replaced,
	 * at most every PUBLISHER_RENEWAL_MS, and the nacked or stalled tasks are published again on it.
	 */
	private renewPublisher(stale: ConfirmChannel, why: string): void {
		const connection = this.connection;
		if (!connection || this.publisher !== stale || this.renewingPublisher || Date.now() - this.publisherOpenedAt < PUBLISHER_RENEWAL_MS) return;
		this.renewingPublisher = true;
		this.openPublisher(connection)
			.then(publisher => {
				if (this.connection !== connection) return publisher.close();
				this.publisher = publisher;
				this.publisherOpenedAt = this.publisherConfirmedAt = Date.now();
				this.writable = true;
				this.onDrain();
				this.options.logger.warn(`${why}: publishing on a new channel`);
				// Not awaited: a stalled channel may be slow to answer its close, and the next
				// renewal must not wait for it.
				stale.close().catch(() => undefined);
			})
			.catch(() => undefined)
			.finally(() => (this.renewingPublisher = false));
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
