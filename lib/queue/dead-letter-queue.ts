import type { ChannelModel, GetMessage } from "amqplib";
import { copyOptions, DEAD_LETTER_HEADERS } from "./message-copies";
import { deadLetterQueueOf, type DeadLetter } from "./task-queue";

/** Bytes of a dead letter's body an operator sees in a listing. */
const HEAD_BYTES = 80;

/** A dead letter's first bytes as one line of text: JSON escapes for anything unprintable, U+FFFD for broken UTF-8. */
function headOf(content: Buffer): string {
	const text = content.subarray(0, HEAD_BYTES).toString("utf8");
	return JSON.stringify(text).slice(1, -1) + (content.length > HEAD_BYTES ? "…" : "");
}

/** The worker's reason, or RabbitMQ's own for a message it dead-lettered (a quorum queue's delivery limit). */
function reasonOf(message: GetMessage): string {
	const headers = message.properties.headers ?? {};
	if (typeof headers["x-dead-reason"] === "string") return headers["x-dead-reason"];
	const death = (headers["x-death"] as { reason?: string }[] | undefined)?.[0];
	return death?.reason ? `${death.reason} (RabbitMQ)` : "unknown";
}

function describe(message: GetMessage): DeadLetter {
	const { messageId, headers } = message.properties;
	return {
		messageId: typeof messageId === "string" ? messageId : null,
		reason: reasonOf(message),
		bytes: message.content.length,
		head: headOf(message.content),
		deadAt: typeof headers?.["x-dead-at"] === "string" ? headers["x-dead-at"] : null,
	};
}

/**
 * The first `limit` messages of `queue`'s dead-letter queue, taken without acknowledging and
 * handed back when the channel closes: they stay where they are, in their order.
 */
export async function listDeadLetters(connection: ChannelModel, queue: string, limit: number): Promise<DeadLetter[]> {
	const channel = await connection.createChannel();
	try {
		const letters: DeadLetter[] = [];
		while (letters.length < limit) {
			const message = await channel.get(deadLetterQueueOf(queue), { noAck: false });
			if (!message) break;
			letters.push(describe(message));
		}
		return letters;
	} finally {
		await channel.close().catch(() => undefined);
	}
}

/**
 * Moves up to `limit` dead letters back to `queue`, one at a time: each copy is confirmed by
 * RabbitMQ before its dead letter is acknowledged, so a failure midway loses none (at worst the
 * one in hand is in both queues, and storing it is idempotent). The copies leave the dead-letter
 * headers behind. Resolves with how many moved.
 */
export async function replayDeadLetters(connection: ChannelModel, queue: string, limit: number): Promise<number> {
	const channel = await connection.createConfirmChannel();
	try {
		// A publish to a queue that is not there is confirmed and dropped: the dead letter would be lost.
		await channel.checkQueue(queue);
		let moved = 0;
		while (moved < limit) {
			const message = await channel.get(deadLetterQueueOf(queue), { noAck: false });
			if (!message) break;
			await new Promise<void>((resolve, reject) =>
				channel.publish("", queue, message.content, copyOptions(message, {}, DEAD_LETTER_HEADERS), err => (err ? reject(err) : resolve())),
			);
			channel.ack(message);
			moved++;
		}
		return moved;
	} finally {
		await channel.close().catch(() => undefined);
	}
}
