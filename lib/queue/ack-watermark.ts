import type { ConsumeMessage } from "amqplib";

/** The part of an amqplib channel that acknowledges. */
export interface Acknowledger {
	ack(message: ConsumeMessage, allUpTo?: boolean): void;
}

/**
 * Acknowledges one channel's deliveries in their order, with one `multiple` ack as far as every
 * earlier delivery is settled too. The deliveries settled in one pass (a stored batch) cost
 * RabbitMQ a single ack frame, and a message that is still on its way to the dead-letter queue
 * is never acked early by a later batch: the watermark waits for it.
 */
export class AckWatermark {
	private readonly unsettled: ConsumeMessage[] = [];
	private readonly settled = new Set<number>();
	private ackQueued = false;

	constructor(private readonly channel: Acknowledger) {}

	/** Deliveries received and not acked yet. */
	get holding(): number {
		return this.unsettled.length;
	}

	received(message: ConsumeMessage): void {
		this.unsettled.push(message);
	}

	settle(message: ConsumeMessage): void {
		this.settled.add(message.fields.deliveryTag);
		if (this.ackQueued) return;
		this.ackQueued = true;
		queueMicrotask(() => this.ackSettled());
	}

	private ackSettled(): void {
		this.ackQueued = false;
		let upTo: ConsumeMessage | undefined;
		while (this.unsettled.length > 0 && this.settled.delete(this.unsettled[0].fields.deliveryTag)) {
			upTo = this.unsettled.shift();
		}
		try {
			if (upTo) this.channel.ack(upTo, true);
		} catch {
			// The channel closed meanwhile: RabbitMQ redelivers these, and storing them is idempotent.
		}
	}
}
