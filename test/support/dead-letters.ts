import type { ChannelModel, ConsumeMessage } from "amqplib";
import { deadLetterQueueOf } from "../../lib/queue/task-queue";

export interface ArrivedDeadLetter {
	message: ConsumeMessage;
	arrivedAt: number;
}

/**
 * A consumer on `queue`'s dead-letter queue that takes off it only the messages whose messageId
 * starts with `mark` (this run's); closing its channel puts every other message it was handed
 * back on the queue, untouched.
 */
export async function watchDeadLetters(connection: ChannelModel, queue: string, mark: string) {
	const channel = await connection.createChannel();
	const arrived = new Map<string, ArrivedDeadLetter>();
	await channel.consume(deadLetterQueueOf(queue), message => {
		const id = message?.properties.messageId;
		if (!message || typeof id !== "string" || !id.startsWith(mark)) return;
		channel.ack(message);
		arrived.set(id, { message, arrivedAt: Date.now() });
	});
	return {
		arrived,
		/** Resolves with what has arrived once all `ids` have, or after `timeoutMs` with what there is. */
		async waitFor(ids: string[], timeoutMs: number): Promise<Map<string, ArrivedDeadLetter>> {
			const deadline = Date.now() + timeoutMs;
			while (!ids.every(id => arrived.has(id)) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20));
			return arrived;
		},
		close: () => channel.close(),
	};
}
