import { setTimeout as sleep } from "node:timers/promises";
import { backoffMs } from "./backoff";
import { isDocumentError, isStoreOutage } from "./store-errors";
import type { QueuedTask } from "../task";
import type { DeadLetterReason, TaskBatchHandler } from "./task-queue";

export type Outcome = "stored" | "dead-letter" | "released";

/** Why a delivery is dead-lettered: the reason (a metric label) and what exactly was wrong. */
export interface DeadLetterCause {
	reason: DeadLetterReason;
	detail: string;
}

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
	/** Called once per delivery with what became of it. */
	settle: (handle: H, outcome: Outcome, cause?: DeadLetterCause) => void;
	/** Told of each failed attempt of a batch that is held for the store to come back. */
	onError: (err: Error, attempt: number) => void;
	retryDelayMs?: (attempt: number) => number;
}

interface Pending<H> {
	task: QueuedTask;
	handle: H;
}

const defaultRetryDelay = (attempt: number) => backoffMs(attempt, 5000);

/** What one write of a batch, split as far as needed, made of its deliveries. */
interface WriteResult<H> {
	stored: number;
	/** Deliveries whose own write failed for a reason that is not an outage, with that error. */
	failed: { pending: Pending<H>; error: Error }[];
	/** Deliveries not written because the store is out, and the outage. */
	unwritten: Pending<H>[];
	outage?: Error;
}

/**
 * Under load a worker's deliveries come in bursts a millisecond or two apart (each gateway
 * publishes in 1 ms windows); a pause of 5 ms means the queue has run dry for now.
 */
const QUIET_MS = 5;

/**
 * Groups deliveries into store calls and settles every delivery exactly once: acked after its
 * batch is stored, dead-lettered alone when the store refuses it, or released (left for
 * redelivery) when the consumer stops while the store is out.
 *
 * A batch the store fails is split in halves until the failing documents stand alone, so that
 * the good ones are stored and only those are dead-lettered. A store outage (see store-errors.ts)
 * is no document's fault: the batch is held and retried with a growing delay for as long as it
 * lasts (never a hot requeue loop), and as the consumer's prefetch fills up, RabbitMQ stops
 * delivering: consumption pauses.
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
		for (let attempt = 1; ; attempt++) {
			const result: WriteResult<H> = { stored: 0, failed: [], unwritten: [] };
			await this.write(batch, result);
			const held = result.unwritten;
			for (const { pending, error } of result.failed) {
				// An error no one can place counts against the document only if the store took others
				// meanwhile; if it took none, it is the store's, and the document waits with the rest.
				if (result.stored > 0 || isDocumentError(error))
					this.options.settle(pending.handle, "dead-letter", { reason: "store_refused", detail: `the store refused the task: ${error.message}` });
				else held.push(pending);
			}
			if (held.length === 0) return;
			this.options.onError(result.outage ?? result.failed[0].error, attempt);
			if (this.stopping) return this.settleAll(held, "released");
			await sleep(this.retryDelay(attempt));
			// Deliveries that came meanwhile join the retry: the store gets them as soon as it is back,
			// and a document it keeps refusing then shows beside others that it takes.
			batch = held.concat(this.buffer.splice(0, Math.max(0, this.options.maxBatch - held.length)));
		}
	}

	/** Writes `batch`, splitting it in halves on any error but an outage; settles what is stored or refused. */
	private async write(batch: Pending<H>[], result: WriteResult<H>): Promise<void> {
		if (result.outage) return void result.unwritten.push(...batch);
		let refused: Awaited<ReturnType<TaskBatchHandler>>;
		try {
			refused = await this.options.handler(batch.map(pending => pending.task));
		} catch (err) {
			const error = err as Error;
			if (isStoreOutage(error)) {
				result.outage = error;
				result.unwritten.push(...batch);
			} else if (batch.length === 1) {
				result.failed.push({ pending: batch[0], error });
			} else {
				const half = Math.ceil(batch.length / 2);
				await this.write(batch.slice(0, half), result);
				await this.write(batch.slice(half), result);
			}
			return;
		}
		if (!refused?.length) {
			result.stored += batch.length;
			return this.settleAll(batch, "stored");
		}
		const refusedTasks = new Map(refused.map(entry => [entry.task, entry]));
		for (const pending of batch) {
			const entry = refusedTasks.get(pending.task);
			if (entry) this.options.settle(pending.handle, "dead-letter", { reason: entry.reason, detail: entry.detail });
			else this.options.settle(pending.handle, "stored");
		}
		result.stored += batch.length - refused.length;
	}

	private settleAll(batch: Pending<H>[], outcome: Outcome): void {
		for (const pending of batch) this.options.settle(pending.handle, outcome);
	}
}
