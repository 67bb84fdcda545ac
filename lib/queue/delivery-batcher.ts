import { setTimeout as sleep } from "node:timers/promises";
import { backoffMs } from "./backoff";
import type { QueuedTask } from "../task";
import type { TaskBatchHandler } from "./task-queue";

export type Outcome = "stored" | "dead-letter" | "released";

/** Half the prefetch window is written while the other half arrives. */
export function batchSizeFor(prefetch: number): number {
	return Math.max(1, Math.ceil(prefetch / 2));
}

export interface BatcherOptions<H> {
	handler: TaskBatchHandler;
	/** Largest batch handed to the handler at once. */
	maxBatch: number;
	/**
	 * Longest a short batch waits for more deliveries, from its first one; 0 writes whatever one
	 * event-loop turn brought. Every write costs the store a transaction, the store client a few
	 * hundred microseconds and RabbitMQ an ack whatever its size, so under load a few tens of
	 * milliseconds buy far fewer, larger writes.
	 */
	maxWaitMs?: number;
	/**
	 * With maxWaitMs, a short batch is also written once no delivery has come for this long
	 * (default QUIET_MS): a busy queue keeps it open up to maxWaitMs, while a lone task is not
	 * held for deliveries that are not coming.
	 */
	quietMs?: number;
	/** Attempts for one batch before its tasks are dead-lettered. */
	maxAttempts: number;
	/** Called once per delivery with what became of it. */
	settle: (handle: H, outcome: Outcome, reason?: string) => void;
	onError: (err: Error, attempt: number) => void;
	retryDelayMs?: (attempt: number) => number;
}

interface Pending<H> {
	task: QueuedTask;
	handle: H;
}

const defaultRetryDelay = (attempt: number) => backoffMs(attempt, 5000);

/**
 * Under load a worker's deliveries come in bursts a millisecond or two apart (each gateway
 * publishes in 1 ms windows); a pause of 5 ms means the queue has run dry for now.
 */
const QUIET_MS = 5;

/**
 * Groups deliveries into store calls, retries a failed batch with a growing delay (never a hot
 * requeue loop), and settles every delivery exactly once: acked after its batch is stored,
 * dead-lettered after the last attempt, or released (left for redelivery) when the consumer
 * stops mid-retry.
 *
 * One batch is written at a time: what arrives meanwhile waits and goes in the next batch. An
 * idle consumer so writes a single task at once, and a busy one writes few large batches
 * instead of many small concurrent ones, which is what a store commits fastest.
 */
export class DeliveryBatcher<H> {
	private buffer: Pending<H>[] = [];
	private flushScheduled = false;
	/** Set while a short batch lingers; cleared when it is written. */
	private lingerTimer: NodeJS.Timeout | null = null;
	private lingerExpired = false;
	/** performance.now() of the lingering batch's first delivery, and of the latest one. */
	private lingerStartedAt = 0;
	private lastDeliveryAt = 0;
	private writing: Promise<void> | null = null;
	private stopping = false;
	private readonly retryDelay: (attempt: number) => number;

	constructor(private readonly options: BatcherOptions<H>) {
		this.retryDelay = options.retryDelayMs ?? defaultRetryDelay;
	}

	push(task: QueuedTask, handle: H): void {
		this.buffer.push({ task, handle });
		if (this.buffer.length >= this.options.maxBatch) {
			this.flush();
		} else if (this.options.maxWaitMs) {
			this.lastDeliveryAt = performance.now();
			if (this.buffer.length === 1 && !this.lingerTimer && !this.lingerExpired) {
				this.lingerStartedAt = this.lastDeliveryAt;
				this.lingerUntilDue();
			}
		} else if (!this.flushScheduled) {
			// Deliveries parsed from one socket read arrive in the same turn: batch them.
			this.flushScheduled = true;
			setImmediate(() => this.flush());
		}
	}

	/**
	 * Writes the lingering batch once its first delivery has waited maxWaitMs or no delivery has
	 * come for quietMs, whichever is first; checked by one timer, not reset on every delivery.
	 */
	private lingerUntilDue(): void {
		const now = performance.now();
		const waitLeft = (this.options.maxWaitMs ?? 0) - (now - this.lingerStartedAt);
		const quietLeft = (this.options.quietMs ?? QUIET_MS) - (now - this.lastDeliveryAt);
		if (waitLeft > 0 && quietLeft > 0) {
			const timer: NodeJS.Timeout = setTimeout(
				() => {
					// The event loop runs due timers before it reads its sockets. After this process has
					// waited for a core (both are due then), the deliveries that came meanwhile are read
					// first, or they would pass for a pause and the batch be written short.
					setImmediate(() => {
						if (this.lingerTimer === timer) this.lingerUntilDue();
					});
				},
				Math.min(waitLeft, quietLeft),
			);
			this.lingerTimer = timer;
			return;
		}
		this.lingerTimer = null;
		this.lingerExpired = true;
		this.flush();
	}

	/** Waits for every buffered and in-flight batch; retries stop early, releasing their tasks. */
	async drain(): Promise<void> {
		this.stopping = true;
		this.flush();
		while (this.writing) await this.writing;
	}

	private flush(): void {
		this.flushScheduled = false;
		if (this.writing || this.buffer.length === 0) return;
		const full = this.buffer.length >= this.options.maxBatch;
		if (this.options.maxWaitMs && !full && !this.lingerExpired && !this.stopping) return;
		if (this.lingerTimer) clearTimeout(this.lingerTimer);
		this.lingerTimer = null;
		const batch = this.buffer.splice(0, this.options.maxBatch);
		// What is left waited behind a full batch already: it goes next, without lingering again.
		this.lingerExpired = this.buffer.length > 0;
		this.writing = this.store(batch).finally(() => {
			this.writing = null;
			this.flush();
		});
	}

	private async store(batch: Pending<H>[]): Promise<void> {
		const tasks = batch.map(pending => pending.task);
		for (let attempt = 1; ; attempt++) {
			try {
				await this.options.handler(tasks);
				this.settleAll(batch, "stored");
				return;
			} catch (err) {
				this.options.onError(err as Error, attempt);
				if (attempt >= this.options.maxAttempts) {
					this.settleAll(batch, "dead-letter", `store failed ${attempt} times: ${(err as Error).message}`);
					return;
				}
				if (this.stopping) {
					this.settleAll(batch, "released");
					return;
				}
				await sleep(this.retryDelay(attempt));
			}
		}
	}

	private settleAll(batch: Pending<H>[], outcome: Outcome, reason?: string): void {
		for (const pending of batch) this.options.settle(pending.handle, outcome, reason);
	}
}
