import type { MetricTypes, ServiceBroker } from "moleculer";
import { DEAD_LETTER_REASONS, type DeadLetterReason } from "./queue/task-queue";
import type { QueuedTask } from "./task";

/**
 * The task pipeline's metrics, in the broker's own registry, so that the Prometheus
 * reporter of moleculer.config.ts exports them beside Moleculer's: each name below is the name
 * Prometheus shows (the reporter adds the `namespace` and `nodeID` labels, histograms get
 * `_bucket` series). Nothing is registered when metrics are off (no METRICS_PORT): then
 * `taskMetricsOf` returns null and the callers skip every observation.
 *
 * Moleculer's histograms export buckets only (no `_sum`/`_count` unless quantiles are on, which
 * the Prometheus text format cannot carry on a histogram); `_bucket{le="+Inf"}` is the count.
 */

export const TASK_METRICS = {
	accepted: {
		type: "counter",
		name: "tasks_accepted_total",
		labelNames: ["source"],
		description: "Tasks a gateway published and RabbitMQ confirmed (answered 202); a retry with the same Idempotency-Key is not counted again",
	},
	refused: {
		type: "counter",
		name: "tasks_refused_total",
		labelNames: ["source", "status"],
		description: "Requests to change something (any method but GET and HEAD) that a gateway answered with an error status",
	},
	publishConfirm: {
		type: "histogram",
		name: "tasks_publish_confirm_seconds",
		description: "From a gateway's publish to RabbitMQ's confirm of the task",
		// PUBLISH_TIMEOUT_MS is 2 s by default; a confirm normally takes a few milliseconds.
		buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
	},
	stored: {
		type: "counter",
		name: "tasks_stored_total",
		labelNames: ["processed_by"],
		description: "Tasks a worker stored (and so acknowledges), by worker role",
	},
	storeBatchSize: {
		type: "histogram",
		name: "tasks_store_batch_size",
		description: "Tasks per store write that succeeded",
		// Up to half of WORKER_PREFETCH (200 by default).
		buckets: [1, 2, 5, 10, 20, 50, 100, 200, 400],
	},
	storeWrite: {
		type: "histogram",
		name: "tasks_store_write_seconds",
		description: "Duration of each store write attempt, failed ones included",
		buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
	},
	deadLettered: {
		type: "counter",
		name: "tasks_dead_lettered_total",
		labelNames: ["reason"],
		description:
			"Messages moved to the dead-letter queue, by reason: too_large, unreadable, invalid, duplicate_id, store_refused, poison (docs/hostile-input.md)",
	},
	endToEnd: {
		type: "histogram",
		name: "tasks_end_to_end_seconds",
		description: "processed_at - created_at of each stored task",
		// From a linger of 20 ms on an idle queue to minutes behind a backlog.
		buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
	},
	queueMessages: {
		type: "gauge",
		name: "task_queue_messages",
		labelNames: ["queue"],
		description: "Ready messages of the task queue and of its dead-letter queue, sampled by each worker",
	},
} as const;

/** How often each worker samples the queue depths: a scrape interval, not the hot path. */
export const QUEUE_SAMPLE_INTERVAL_MS = 5000;

type Counter = MetricTypes.Counter;
type Gauge = MetricTypes.Gauge;
type Histogram = MetricTypes.Histogram;

/**
 * The recording side. Label objects are made once per label value and reused, and every
 * per-batch figure is one call per batch, so a task costs the hot path a counter increment on
 * the gateway and a histogram observation for its confirm and its end-to-end time.
 */
export class TaskMetrics {
	private readonly accepted: Counter;
	private readonly refused: Counter;
	private readonly publishConfirm: Histogram;
	private readonly stored: Counter;
	private readonly storeBatchSize: Histogram;
	private readonly storeWrite: Histogram;
	private readonly deadLettered: Counter;
	private readonly endToEnd: Histogram;
	private readonly queueMessages: Gauge;
	private readonly labels = new Map<string, Map<string, Record<string, string>>>();
	private readonly refusedLabels = new Map<object, Map<number, Record<string, string>>>();

	constructor(broker: ServiceBroker) {
		const { metrics } = broker;
		// Registered once per broker: every service on the node records into the same series.
		const metric = <T>(options: { name: string }) => (metrics.getMetric(options.name) ?? metrics.register({ ...options } as never)) as T;
		this.accepted = metric<Counter>(TASK_METRICS.accepted);
		this.refused = metric<Counter>(TASK_METRICS.refused);
		this.publishConfirm = metric<Histogram>(TASK_METRICS.publishConfirm);
		this.stored = metric<Counter>(TASK_METRICS.stored);
		this.storeBatchSize = metric<Histogram>(TASK_METRICS.storeBatchSize);
		this.storeWrite = metric<Histogram>(TASK_METRICS.storeWrite);
		this.deadLettered = metric<Counter>(TASK_METRICS.deadLettered);
		this.endToEnd = metric<Histogram>(TASK_METRICS.endToEnd);
		this.queueMessages = metric<Gauge>(TASK_METRICS.queueMessages);
		for (const reason of DEAD_LETTER_REASONS) this.deadLettered.increment(this.label("reason", reason), 0);
	}

	/**
	 * Series exist from the first scrape at 0, so that rate() and increase() see the first task
	 * (a series that appears with its first value shows no increase). Histograms cannot be
	 * created empty in Moleculer; theirs start with the first observation.
	 */
	gatewayCreated(source: string): void {
		this.accepted.increment(this.label("source", source), 0);
	}

	workerCreated(processedBy: string): void {
		this.stored.increment(this.label("processed_by", processedBy), 0);
	}

	taskAccepted(source: string, confirmSeconds: number): void {
		this.accepted.increment(this.label("source", source));
		this.publishConfirm.observe(confirmSeconds);
	}

	requestRefused(source: string, status: number): void {
		this.refused.increment(this.sourceAndStatus(source, status));
	}

	/** One successful write of `stored`, which the worker stamped with `processedAt`. */
	batchStored(processedBy: string, stored: readonly QueuedTask[], processedAt: number): void {
		this.stored.increment(this.label("processed_by", processedBy), stored.length);
		this.storeBatchSize.observe(stored.length);
		for (const task of stored) this.endToEnd.observe((processedAt - Date.parse(task.created_at)) / 1000);
	}

	storeAttempted(seconds: number): void {
		this.storeWrite.observe(seconds);
	}

	messageDeadLettered(reason: DeadLetterReason): void {
		this.deadLettered.increment(this.label("reason", reason));
	}

	queueDepth(queue: string, messages: number): void {
		this.queueMessages.set(messages, this.label("queue", queue));
	}

	/** The same label object for the same value, looked up without building a key. */
	private label(name: string, value: string): Record<string, string> {
		let byValue = this.labels.get(name);
		if (!byValue) this.labels.set(name, (byValue = new Map()));
		let labels = byValue.get(value);
		if (!labels) byValue.set(value, (labels = { [name]: value }));
		return labels;
	}

	private sourceAndStatus(source: string, status: number): Record<string, string> {
		const bySource = this.label("source", source);
		let byStatus = this.refusedLabels.get(bySource);
		if (!byStatus) this.refusedLabels.set(bySource, (byStatus = new Map()));
		let labels = byStatus.get(status);
		if (!labels) byStatus.set(status, (labels = { source, status: String(status) }));
		return labels;
	}
}

const byBroker = new WeakMap<ServiceBroker, TaskMetrics>();

/** The node's task metrics, registered on first use; null when the broker's metrics are off. */
export function taskMetricsOf(broker: ServiceBroker): TaskMetrics | null {
	if (!broker.isMetricsEnabled()) return null;
	let taskMetrics = byBroker.get(broker);
	if (!taskMetrics) byBroker.set(broker, (taskMetrics = new TaskMetrics(broker)));
	return taskMetrics;
}
