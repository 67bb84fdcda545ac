import { performance } from "node:perf_hooks";
import type { Service, ServiceSchema } from "moleculer";
import { stampProcessed, type QueuedTask } from "../lib/task";
import { deadLetterQueueOf, type RefusedTask, type TaskConsumer, type TaskQueue } from "../lib/queue/task-queue";
import type { RefusedInsert } from "../lib/store/task-store";
import { QUEUE_SAMPLE_INTERVAL_MS, taskMetricsOf, type TaskMetrics } from "../lib/task-metrics";
import { asMixin } from "./as-mixin";

export interface TaskWorkerSettings {
	/** The `processed_by` stamp of this worker role: "worker-py" or "worker-go". */
	processedBy: string;
}

interface WorkerMethods {
	storeBatch(tasks: QueuedTask[]): Promise<RefusedTask[]>;
	sampleQueueDepth(queue: TaskQueue): Promise<void>;
}

interface WorkerVars {
	consumer: TaskConsumer;
	/** Null when metrics are off. */
	metrics: TaskMetrics | null;
	depthSampler: NodeJS.Timeout | null;
}

type WorkerSchema = Partial<ServiceSchema<Partial<TaskWorkerSettings>, WorkerMethods, WorkerVars, Service<TaskWorkerSettings> & WorkerMethods & WorkerVars>>;

/**
 * A competing consumer of the task queue (SPEC "worker-py" / "worker-go"): stamps each task with
 * its role and node and stores the batch through the node's own `tasks` service. RabbitMQ gets
 * the acks only after that write, so a crash at any point leads to redelivery, never to loss.
 */
const TaskWorkerMixin: WorkerSchema = {
	dependencies: ["tasks"],
	methods: {
		/** Stores the batch; resolves with the tasks the store refused one by one (see TaskStore.insertProcessed). */
		async storeBatch(tasks: QueuedTask[]): Promise<RefusedTask[]> {
			const stamp = { processedBy: this.settings.processedBy, nodeID: this.broker.nodeID };
			const processedAt = Date.now();
			const processedAtIso = new Date(processedAt).toISOString();
			const stamped = tasks.map(task => stampProcessed(task, stamp, processedAtIso));
			const metrics = this.metrics;
			const writeStarted = metrics ? performance.now() : 0;
			let refused: RefusedInsert[];
			try {
				({ refused } = await this.broker.call<{ refused: RefusedInsert[] }, object>("tasks.storeProcessed", { tasks: stamped }));
			} finally {
				metrics?.storeAttempted((performance.now() - writeStarted) / 1000);
			}
			if (refused.length === 0) {
				metrics?.batchStored(stamp.processedBy, stamped, processedAt);
				return [];
			}
			const refusedAt = new Set(refused.map(entry => entry.index));
			metrics?.batchStored(
				stamp.processedBy,
				stamped.filter((_, index) => !refusedAt.has(index)),
				processedAt,
			);
			return refused.map(({ index, reason, detail }) => ({ task: tasks[index], reason, detail }));
		},
		/** Ready messages of the task queue and its dead-letter queue, for task_queue_messages. */
		async sampleQueueDepth(queue: TaskQueue): Promise<void> {
			try {
				const depth = await queue.depth();
				this.metrics?.queueDepth(depth.queue, depth.messages);
				this.metrics?.queueDepth(deadLetterQueueOf(depth.queue), depth.deadLettered);
			} catch (err) {
				// RabbitMQ is away: the gauge keeps its last value, and the logs already say why.
				this.logger.debug(`Sampling the queue depth failed: ${(err as Error).message}`);
			}
		},
	},
	created() {
		this.metrics = taskMetricsOf(this.broker);
		this.metrics?.workerCreated(this.settings.processedBy);
		this.depthSampler = null;
	},
	async started() {
		const queue = this.broker.taskQueue;
		this.consumer = await queue.consume(tasks => this.storeBatch(tasks));
		if (this.metrics) {
			void this.sampleQueueDepth(queue);
			this.depthSampler = setInterval(() => void this.sampleQueueDepth(queue), QUEUE_SAMPLE_INTERVAL_MS).unref();
		}
	},
	async stopped() {
		if (this.depthSampler) clearInterval(this.depthSampler);
		await this.consumer.stop();
	},
};

export default asMixin(TaskWorkerMixin);
