import type { Middleware, ServiceBroker } from "moleculer";
import { config, type ClusterConfig } from "../lib/config";
import { AmqpTaskQueue } from "../lib/queue/amqp-task-queue";
import { MemoryTaskQueue } from "../lib/queue/memory-task-queue";
import type { DeadLetterReason, TaskQueue } from "../lib/queue/task-queue";
import { taskMetricsOf } from "../lib/task-metrics";

declare module "moleculer" {
	interface ServiceBroker {
		/**
		 * The node's task queue, shared by every service on the broker (TaskQueueMiddleware): one
		 * AMQP connection per process, and in the embedded default the one in-process queue that
		 * gateways and workers must have in common.
		 */
		readonly taskQueue: TaskQueue;
	}
}

/**
 * Gives the broker its task queue, the way @moleculer/channels gives it channels: opened on first
 * use (a REPL node that never asks opens no connection), closed after every service has stopped,
 * so a worker acks its last batch and a gateway answers its last request on an open queue.
 */
export function TaskQueueMiddleware(settings: ClusterConfig = config): Middleware {
	let queue: TaskQueue | undefined;
	return {
		name: "TaskQueue",
		created(broker: ServiceBroker) {
			Object.defineProperty(broker, "taskQueue", { get: () => (queue ??= openTaskQueue(broker, settings)) });
		},
		async stopped() {
			await queue?.close();
			queue = undefined;
		},
	};
}

function openTaskQueue(broker: ServiceBroker, settings: ClusterConfig): TaskQueue {
	const metrics = taskMetricsOf(broker);
	const options = {
		queue: settings.taskQueue,
		prefetch: settings.workerPrefetch,
		batchWaitMs: settings.workerBatchWaitMs,
		logger: broker.getLogger("task-queue"),
		onDeadLettered: metrics ? (reason: DeadLetterReason) => metrics.messageDeadLettered(reason) : undefined,
	};
	if (settings.rabbitUrls.length === 0) return new MemoryTaskQueue(options);
	const queue = new AmqpTaskQueue({
		...options,
		urls: settings.rabbitUrls,
		queueType: settings.taskQueueType,
		publishTimeoutMs: settings.publishTimeoutMs,
		maxMessageBytes: settings.maxMessageBytes,
		connectionName: `${broker.nodeID} task queue`,
		// A queue of another type can never be used: the node stops rather than answer 503 for ever.
		onFatal: err => broker.fatal(err.message, err, true),
	});
	queue.start();
	return queue;
}
