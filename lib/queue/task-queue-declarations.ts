import type { Options } from "amqplib";
import type { QueueType } from "../config";
import { deadLetterQueueOf } from "./task-queue";

/**
 * Deliveries of one message after which a quorum queue dead-letters it: a message that takes its
 * worker down every time (a crash, not a failed write, which the worker retries and dead-letters
 * itself). Up to RabbitMQ 4.2 every return counts, also those of a consumer whose connection or
 * node went away, so the limit leaves room for several crashes and node failures in a row.
 * RabbitMQ 4 gives quorum queues 20 when none is set.
 */
export const DELIVERY_LIMIT = 20;

export interface QueueDeclaration {
	queue: string;
	options: Options.AssertQueue;
}

/**
 * The task queue and its dead-letter queue, as every node declares them.
 *
 * classic: both durable, no arguments, as in the original. quorum: both quorum queues, replicated
 * on the cluster's nodes; the task queue dead-letters a message past DELIVERY_LIMIT deliveries to
 * `<queue>.dead` at least once: it keeps the message until the dead-letter queue has confirmed
 * it (RabbitMQ 3.10+, which requires `x-overflow: reject-publish`).
 */
export function queueDeclarations(queue: string, type: QueueType): QueueDeclaration[] {
	const deadLetterQueue = deadLetterQueueOf(queue);
	if (type === "classic") {
		return [
			{ queue, options: { durable: true } },
			{ queue: deadLetterQueue, options: { durable: true } },
		];
	}
	return [
		// Declared first: at-least-once dead-lettering waits for its confirms.
		{ queue: deadLetterQueue, options: { durable: true, arguments: { "x-queue-type": "quorum" } } },
		{
			queue,
			options: {
				durable: true,
				arguments: {
					"x-queue-type": "quorum",
					"x-delivery-limit": DELIVERY_LIMIT,
					"x-dead-letter-exchange": "",
					"x-dead-letter-routing-key": deadLetterQueue,
					"x-dead-letter-strategy": "at-least-once",
					"x-overflow": "reject-publish",
				},
			},
		},
	];
}
