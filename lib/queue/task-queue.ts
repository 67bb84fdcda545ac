import type { QueuedTask } from "../task";

/**
 * The durable work queue between the gateways and the workers.
 *
 * `publish` resolves only once the queue owns the task (RabbitMQ has confirmed it as
 * persisted); a consumer's handler sees batches of valid tasks, and a task is acknowledged
 * only after the handler resolved for its batch.
 */
export interface TaskQueue {
	publish(task: QueuedTask): Promise<void>;
	consume(handler: TaskBatchHandler): Promise<TaskConsumer>;
	/** True while tasks can be published; drives the gateways' readiness. */
	isConnected(): boolean;
	/** Resolves once connected, or rejects with QueueUnavailableError after the timeout. */
	whenConnected(timeoutMs: number): Promise<void>;
	depth(): Promise<QueueDepth>;
	close(): Promise<void>;
}

/** Where a queue reports what it recovers from: the node's logger. */
export interface QueueLogger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

/** Both queues log a failed store attempt alike; the batch is retried, then dead-lettered. */
export function storeFailed(logger: QueueLogger, err: Error, attempt: number, maxAttempts: number): void {
	logger.warn(`Storing a batch failed (attempt ${attempt}/${maxAttempts}): ${err.message}`);
}

export type TaskBatchHandler = (tasks: QueuedTask[]) => Promise<void>;

export interface TaskConsumer {
	/** Stops taking new tasks, finishes (and acknowledges) the ones in hand, then resolves. */
	stop(): Promise<void>;
}

export interface QueueDepth {
	queue: string;
	/** Tasks waiting, not yet delivered to a consumer. */
	messages: number;
	consumers: number;
	deadLettered: number;
}

/** The queue cannot take the task now; the gateway answers 503 with Retry-After. */
export class QueueUnavailableError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "QueueUnavailableError";
	}
}

/** Why a message went to the dead-letter queue, in a few words fit for a metric label. */
export type DeadLetterReason = "unreadable" | "store_failed";

/** Told of each message the dead-letter queue has taken (for tasks_dead_lettered_total). */
export type DeadLetterListener = (reason: DeadLetterReason) => void;

export function deadLetterQueueOf(queue: string): string {
	return `${queue}.dead`;
}
