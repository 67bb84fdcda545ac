import { batchSizeFor, DeliveryBatcher, type DeadLetterCause, type Outcome } from "./delivery-batcher";
import { encodeTaskMessage, type QueuedTask } from "../task";
import {
	storeUnavailable,
	type DeadLetter,
	type DeadLetterListener,
	type QueueDepth,
	type QueueLogger,
	type TaskBatchHandler,
	type TaskConsumer,
	type TaskQueue,
} from "./task-queue";

export interface MemoryQueueOptions {
	queue: string;
	prefetch: number;
	/** See BatcherOptions.maxWaitMs. */
	batchWaitMs?: number;
	logger: QueueLogger;
	retryDelayMs?: (attempt: number) => number;
	onDeadLettered?: DeadLetterListener;
}

interface MemoryConsumer {
	batcher: DeliveryBatcher<QueuedTask>;
	unsettled: number;
}

/**
 * The embedded default's queue: the same contract as the AMQP queue (competing consumers,
 * prefetch, ack after the handler, retries and dead-lettering), held in this process. It
 * persists nothing, so it is for a single-process cluster and tests, never for production.
 */
export class MemoryTaskQueue implements TaskQueue {
	private readonly ready: QueuedTask[] = [];
	private readonly consumers: MemoryConsumer[] = [];
	readonly deadLettered: { task: QueuedTask; cause: DeadLetterCause; at: string }[] = [];
	private nextConsumer = 0;

	constructor(private readonly options: MemoryQueueOptions) {}

	async publish(task: QueuedTask): Promise<void> {
		this.ready.push(structuredClone(task));
		this.dispatch();
	}

	async consume(handler: TaskBatchHandler): Promise<TaskConsumer> {
		const consumer: MemoryConsumer = {
			unsettled: 0,
			batcher: new DeliveryBatcher<QueuedTask>({
				handler,
				maxBatch: batchSizeFor(this.options.prefetch),
				maxWaitMs: this.options.batchWaitMs,
				retryDelayMs: this.options.retryDelayMs,
				onError: (err, attempt) => storeUnavailable(this.options.logger, err, attempt),
				settle: (task, outcome, cause) => this.settle(consumer, task, outcome, cause),
			}),
		};
		this.consumers.push(consumer);
		this.dispatch();
		return {
			stop: async () => {
				this.consumers.splice(this.consumers.indexOf(consumer), 1);
				await consumer.batcher.drain();
			},
		};
	}

	isConnected(): boolean {
		return true;
	}

	async whenConnected(): Promise<void> {}

	async depth(): Promise<QueueDepth> {
		return {
			queue: this.options.queue,
			messages: this.ready.length,
			consumers: this.consumers.length,
			deadLettered: this.deadLettered.length,
		};
	}

	async deadLetters(limit: number): Promise<DeadLetter[]> {
		return this.deadLettered.slice(0, limit).map(({ task, cause, at }) => {
			const body = encodeTaskMessage(task);
			return { messageId: task.id, reason: `${cause.reason}: ${cause.detail}`, bytes: body.length, head: body.toString("utf8", 0, 80), deadAt: at };
		});
	}

	async replayDeadLetters(limit: number): Promise<number> {
		const replayed = this.deadLettered.splice(0, limit);
		this.ready.push(...replayed.map(({ task }) => task));
		this.dispatch();
		return replayed.length;
	}

	async close(): Promise<void> {
		await Promise.all(this.consumers.map(consumer => consumer.batcher.drain()));
		this.consumers.length = 0;
	}

	private settle(consumer: MemoryConsumer, task: QueuedTask, outcome: Outcome, cause?: DeadLetterCause): void {
		consumer.unsettled--;
		if (outcome === "dead-letter") {
			const deadLetter = cause ?? { reason: "store_refused", detail: "the store refused the task" };
			this.deadLettered.push({ task, cause: deadLetter, at: new Date().toISOString() });
			this.options.onDeadLettered?.(deadLetter.reason);
		}
		if (outcome === "released") this.ready.unshift(task);
		this.dispatch();
	}

	/** Hands waiting tasks round-robin to consumers that have room under their prefetch. */
	private dispatch(): void {
		let idleRounds = 0;
		while (this.ready.length > 0 && this.consumers.length > 0 && idleRounds < this.consumers.length) {
			const consumer = this.consumers[this.nextConsumer++ % this.consumers.length];
			if (consumer.unsettled >= this.options.prefetch) {
				idleRounds++;
				continue;
			}
			idleRounds = 0;
			consumer.unsettled++;
			const task = this.ready.shift() as QueuedTask;
			consumer.batcher.push(task, task);
		}
	}
}
