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
	/** The first `limit` messages of the dead-letter queue, left where they are. */
	deadLetters(limit: number): Promise<DeadLetter[]>;
	/** Moves the first `limit` dead letters back to the task queue; resolves with how many moved. */
	replayDeadLetters(limit: number): Promise<number>;
	close(): Promise<void>;
}

/** A message of the dead-letter queue, as an operator sees it. */
export interface DeadLetter {
	messageId: string | null;
	/** DeadLetterReason and details, as the worker wrote them (or RabbitMQ's own x-death reason). */
	reason: string;
	bytes: number;
	/** The body's first bytes, as text with anything unprintable escaped. */
	head: string;
	deadAt: string | null;
}

/** Where a queue reports what it recovers from: the node's logger. */
export interface QueueLogger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

/** Both queues log a store outage alike: the batch is held and tried again until the store is back. */
export function storeUnavailable(logger: QueueLogger, err: Error, attempt: number): void {
	logger.warn(`Storing a batch failed (attempt ${attempt}, holding it and trying again): ${err.message}`);
}

/**
 * Stores a batch of tasks. It throws when nothing of the batch could be stored (the batcher then
 * tells an outage from a document the store refuses), and resolves with the tasks the store refused
 * one by one while it took the others (an id that another task already has).
 */
export type TaskBatchHandler = (tasks: QueuedTask[]) => Promise<RefusedTask[] | void>;

export interface RefusedTask {
	task: QueuedTask;
	reason: DeadLetterReason;
	detail: string;
}

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

/**
 * Why a message went to the dead-letter queue, fit for a metric label and the `x-dead-reason`
 * header's first word (docs/hostile-input.md says what each means).
 */
export const DEAD_LETTER_REASONS = ["too_large", "unreadable", "invalid", "duplicate_id", "store_refused", "poison"] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

/** Told of each message the dead-letter queue has taken (for tasks_dead_lettered_total). */
export type DeadLetterListener = (reason: DeadLetterReason) => void;

export function deadLetterQueueOf(queue: string): string {
	return `${queue}.dead`;
}
