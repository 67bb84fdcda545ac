import type { QueuedTask } from "./task";
import type { TaskBatchHandler } from "./task-queue";

export type Outcome = "stored" | "dead-letter" | "released";

export interface BatcherOptions<H> {
	handler: TaskBatchHandler;
	/** Largest batch handed to the handler at once. */
	maxBatch: number;
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

const defaultRetryDelay = (attempt: number) => Math.min(100 * 2 ** (attempt - 1), 5000);

/**
 * Groups deliveries that arrive together into one store call, retries a failed batch with a
 * growing delay (never a hot requeue loop), and settles every delivery exactly once: acked
 * after its batch is stored, dead-lettered after the last attempt, or released (left for
 * redelivery) when the consumer stops mid-retry.
 */
export class DeliveryBatcher<H> {
	private buffer: Pending<H>[] = [];
	private flushScheduled = false;
	private readonly inFlight = new Set<Promise<void>>();
	private stopping = false;
	private readonly retryDelay: (attempt: number) => number;

	constructor(private readonly options: BatcherOptions<H>) {
		this.retryDelay = options.retryDelayMs ?? defaultRetryDelay;
	}

	push(task: QueuedTask, handle: H): void {
		this.buffer.push({ task, handle });
		if (this.buffer.length >= this.options.maxBatch) {
			this.flush();
		} else if (!this.flushScheduled) {
			// Deliveries parsed from one socket read arrive in the same turn: batch them.
			this.flushScheduled = true;
			setImmediate(() => this.flush());
		}
	}

	/** Waits for every buffered and in-flight batch; retries stop early, releasing their tasks. */
	async drain(): Promise<void> {
		this.stopping = true;
		this.flush();
		while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
	}

	get pending(): number {
		return this.buffer.length;
	}

	private flush(): void {
		this.flushScheduled = false;
		while (this.buffer.length > 0) {
			const batch = this.buffer.splice(0, this.options.maxBatch);
			const run = this.store(batch).finally(() => this.inFlight.delete(run));
			this.inFlight.add(run);
		}
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

export function sleep(ms: number): Promise<void> {
	return new Promise(resolve => setTimeout(resolve, ms));
}
