import type { Service, ServiceSchema } from "moleculer";
import { stampProcessed, type QueuedTask } from "../lib/task";
import type { TaskConsumer } from "../lib/queue/task-queue";
import { asMixin } from "./as-mixin";

export interface TaskWorkerSettings {
	/** The `processed_by` stamp of this worker role: "worker-py" or "worker-go". */
	processedBy: string;
}

interface WorkerMethods {
	storeBatch(tasks: QueuedTask[]): Promise<void>;
}

interface WorkerVars {
	consumer: TaskConsumer;
}

type WorkerSchema = Partial<ServiceSchema<
	Partial<TaskWorkerSettings>,
	WorkerMethods,
	WorkerVars,
	Service<TaskWorkerSettings> & WorkerMethods & WorkerVars
>>;

/**
 * A competing consumer of the task queue (SPEC "worker-py" / "worker-go"): stamps each task with
 * its role and node and stores the batch through the node's own `tasks` service. RabbitMQ gets
 * the acks only after that write, so a crash at any point leads to redelivery, never to loss.
 */
const TaskWorkerMixin: WorkerSchema = {
	dependencies: ["tasks"],
	methods: {
		async storeBatch(tasks: QueuedTask[]): Promise<void> {
			const stamp = { processedBy: this.settings.processedBy, nodeID: this.broker.nodeID };
			const processedAt = new Date().toISOString();
			await this.broker.call("tasks.storeProcessed", { tasks: tasks.map(task => stampProcessed(task, stamp, processedAt)) });
		},
	},
	async started() {
		this.consumer = await this.broker.taskQueue.consume(tasks => this.storeBatch(tasks));
	},
	async stopped() {
		await this.consumer.stop();
	},
};

export default asMixin(TaskWorkerMixin);
