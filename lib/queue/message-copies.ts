import type { Message, Options } from "amqplib";

/**
 * The header in which a message's copies count how often it came back unacknowledged (a worker
 * died, lost its connection or stopped while holding it). RabbitMQ counts returns itself only on
 * quorum queues (x-delivery-count), and only per copy; the header works on both queue types.
 */
export const REDELIVERIES_HEADER = "x-redeliveries";

/**
 * Returns after which a message is dead-lettered as poison. A worker killed while it holds a
 * message returns it too, so the limit leaves room for a few crashes that the message had no part
 * in (docs/decisions/0010-poison-messages.md).
 */
export const POISON_REDELIVERIES = 5;

/**
 * Headers that say where a message has been: the worker's, and RabbitMQ's own when it
 * dead-letters (a quorum queue's delivery limit). A replayed message leaves them behind and
 * starts afresh.
 */
export const DEAD_LETTER_HEADERS = [
	"x-dead-reason",
	"x-original-queue",
	"x-dead-at",
	REDELIVERIES_HEADER,
	"x-death",
	"x-delivery-count",
	"x-first-death-exchange",
	"x-first-death-queue",
	"x-first-death-reason",
	"x-last-death-exchange",
	"x-last-death-queue",
	"x-last-death-reason",
] as const;

/**
 * How often a quorum queue has handed `message` out before: RabbitMQ counts each return in
 * x-delivery-count, so a returned message needs no copy there to carry its count.
 */
export function quorumReturnsOf(message: Message): number {
	const count = Number(message.properties.headers?.["x-delivery-count"]);
	return Number.isInteger(count) && count > 0 ? count : 0;
}

/** How often `message` came back unacknowledged before, by its header. */
export function redeliveriesOf(message: Message): number {
	const count = Number(message.properties.headers?.[REDELIVERIES_HEADER]);
	return Number.isInteger(count) && count > 0 ? count : 0;
}

/**
 * Publish options for a copy of `message`: its own properties, persistent, with `headers` merged
 * into its headers and those named in `without` left out. Left out too: userId, which RabbitMQ
 * checks against the publishing connection's user, and expiration, which would let the copy
 * vanish from the queue it is moved to.
 */
export function copyOptions(message: Message, headers: Record<string, unknown>, without: readonly string[] = []): Options.Publish {
	const { contentType, contentEncoding, messageId, timestamp, correlationId, type, appId, priority } = message.properties;
	const merged: Record<string, unknown> = { ...message.properties.headers, ...headers };
	for (const name of without) delete merged[name];
	return {
		persistent: true,
		contentType,
		contentEncoding,
		messageId,
		timestamp,
		correlationId,
		type,
		appId,
		priority,
		headers: merged,
	};
}
