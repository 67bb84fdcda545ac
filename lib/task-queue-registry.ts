import type { ServiceBroker } from "moleculer";
import { AmqpTaskQueue } from "./amqp-task-queue";
import { config, type ClusterConfig } from "./config";
import { MemoryTaskQueue } from "./memory-task-queue";
import type { TaskQueue } from "./task-queue";

interface Shared {
	queue: TaskQueue;
	users: number;
}

const sharedByBroker = new WeakMap<ServiceBroker, Shared>();

/**
 * The task queue of this node, shared by every service on its broker: one AMQP connection per
 * process, and in the embedded default the one in-process queue that gateways and workers
 * must have in common. Each `acquire` is paired with a `release`; the last one closes it.
 */
export function acquireTaskQueue(broker: ServiceBroker, settings: ClusterConfig = config): TaskQueue {
	let shared = sharedByBroker.get(broker);
	if (!shared) {
		shared = { queue: openTaskQueue(broker, settings), users: 0 };
		sharedByBroker.set(broker, shared);
	}
	shared.users++;
	return shared.queue;
}

export async function releaseTaskQueue(broker: ServiceBroker): Promise<void> {
	const shared = sharedByBroker.get(broker);
	if (!shared || --shared.users > 0) return;
	sharedByBroker.delete(broker);
	await shared.queue.close();
}

function openTaskQueue(broker: ServiceBroker, settings: ClusterConfig): TaskQueue {
	const logger = broker.getLogger("task-queue");
	const onError = (err: Error, attempt: number) =>
		logger.warn(`Storing a batch failed (attempt ${attempt}/${settings.storeMaxAttempts}): ${err.message}`);
	if (settings.rabbitUrls.length === 0) {
		return new MemoryTaskQueue({
			queue: settings.taskQueue,
			prefetch: settings.workerPrefetch,
			batchWaitMs: settings.workerBatchWaitMs,
			maxAttempts: settings.storeMaxAttempts,
			onError,
		});
	}
	const queue = new AmqpTaskQueue({
		urls: settings.rabbitUrls,
		queue: settings.taskQueue,
		queueType: settings.taskQueueType,
		prefetch: settings.workerPrefetch,
		batchWaitMs: settings.workerBatchWaitMs,
		publishTimeoutMs: settings.publishTimeoutMs,
		maxAttempts: settings.storeMaxAttempts,
		connectionName: `${broker.nodeID} task queue`,
		logger,
		// A queue of another type can never be used: the node stops rather than answer 503 for ever.
		onFatal: err => broker.fatal(err.message, err, true),
	});
	queue.start();
	return queue;
}
