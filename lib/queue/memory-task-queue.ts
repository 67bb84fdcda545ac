import { batchSizeFor, DeliveryBatcher, type Outcome } from "./delivery-batcher";
import type { QueuedTask } from "../task";
import {
	storeFailed,
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
	maxAttempts: number;
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
	readonly deadLettered: { task: QueuedTask; reason: string }[] = [];
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
				maxAttempts: this.options.maxAttempts,
				retryDelayMs: this.options.retryDelayMs,
				onError: (err, attempt) => storeFailed(this.options.logger, err, attempt, this.options.maxAttempts),
				settle: (task, outcome, reason) => this.settle(consumer, task, outcome, reason),
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

	async close(): Promise<void> {
		await Promise.all(this.consumers.map(consumer => consumer.batcher.drain()));
		this.consumers.length = 0;
	}

	private settle(consumer: MemoryConsumer, task: QueuedTask, outcome: Outcome, reason?: string): void {
		consumer.unsettled--;
		if (outcome === "dead-letter") {
			this.deadLettered.push({ task, reason: reason ?? "" });
			this.options.onDeadLettered?.("store_failed");
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
