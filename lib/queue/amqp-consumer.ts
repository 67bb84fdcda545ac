import type { ChannelModel, ConfirmChannel, ConsumeMessage } from "amqplib";
import { AckWatermark } from "./ack-watermark";
import type { AmqpQueueOptions } from "./amqp-task-queue";
import { batchSizeFor, DeliveryBatcher, type DeadLetterCause, type Outcome } from "./delivery-batcher";
import { copyOptions, POISON_REDELIVERIES, quorumReturnsOf, REDELIVERIES_HEADER, redeliveriesOf } from "./message-copies";
import { deadLetterQueueOf, storeUnavailable, type TaskBatchHandler, type TaskConsumer } from "./task-queue";
import { decodeTaskMessage, messageFormatProblem } from "../task";

/**
 * Longest a quorum queue's consumer may receive nothing, holding no delivery, while the queue has
 * ready messages, before it consumes again on a new channel. On RabbitMQ 3.10 a consumer that
 * registers in the moment before a new leader is elected (about 0.3 s after the old one died) is
 * bound to the dead leader and receives nothing until that node is back: seconds, or for good. A
 * live consumer with room gets a ready message within milliseconds.
 */
const CONSUMER_STALL_MS = 500;
/**
 * Times a new channel that has delivered nothing is replaced without asking the queue, after
 * CONSUMER_STALL_MS, then twice and four times that: the channel may be bound to a dead leader
 * though the queue has nothing ready, because other consumers take every message as it comes.
 * Three cover a leader elected up to about 3.5 s after the reconnect; on an idle queue they cost
 * three new channels after each (re)connect.
 */
const BLIND_REOPENS = 3;

interface Delivery {
	channel: ConfirmChannel;
	message: ConsumeMessage;
}

/**
 * One competing consumer of the task queue, on a channel of its own (AmqpTaskQueue attaches it to
 * each new connection). Acks follow the store write; what cannot be decoded or stored goes to the
 * dead-letter queue with its reason, and is acked only once RabbitMQ confirmed the copy.
 */
export class AmqpConsumer implements TaskConsumer {
	private channel: ConfirmChannel | null = null;
	/** Acks of the current channel; a new channel starts its own. */
	private acks: AckWatermark | null = null;
	private consumerTag: string | null = null;
	private connection: ChannelModel | null = null;
	/** When the current channel started consuming or last received a delivery. */
	private deliveredAt = 0;
	/** Whether the current channel has delivered anything. */
	private delivered = false;
	/** New channels in a row replaced for delivering nothing (BLIND_REOPENS). */
	private blindReopens = 0;
	/** A classic queue has no leader to be bound to: its consumers keep no stall watch, nor its bookkeeping. */
	private readonly watchesStalls: boolean;
	/** A quorum queue counts each return in x-delivery-count; a classic queue counts nothing. */
	private readonly queueCountsReturns: boolean;
	private stallWatch: NodeJS.Timeout | null = null;
	private probing = false;
	private stopped = false;
	private readonly batcher: DeliveryBatcher<Delivery>;
	private readonly deadLetterQueue: string;

	constructor(
		private readonly options: AmqpQueueOptions,
		handler: TaskBatchHandler,
		private readonly onStopped: () => void,
		/** The queue's ready messages, asked on another channel than the consumer's. */
		private readonly readyMessages: () => Promise<number>,
	) {
		this.deadLetterQueue = deadLetterQueueOf(options.queue);
		this.watchesStalls = options.queueType === "quorum";
		this.queueCountsReturns = options.queueType === "quorum";
		this.batcher = new DeliveryBatcher<Delivery>({
			handler,
			maxBatch: batchSizeFor(options.prefetch),
			maxWaitMs: options.batchWaitMs,
			retryDelayMs: options.retryDelayMs,
			settle: (delivery, outcome, cause) => this.settle(delivery, outcome, cause),
			onError: (err, attempt) => storeUnavailable(options.logger, err, attempt),
		});
	}

	async attach(connection: ChannelModel): Promise<void> {
		if (this.stopped) return;
		this.connection = connection;
		// Each (re)connect may meet a leader not yet elected: its new channels get their BLIND_REOPENS.
		this.blindReopens = 0;
		await this.open(connection);
		if (this.watchesStalls && !this.stallWatch) {
			this.stallWatch = setInterval(() => void this.checkStalled(), CONSUMER_STALL_MS / 2);
			this.stallWatch.unref();
		}
	}

	private async open(connection: ChannelModel): Promise<void> {
		const { options } = this;
		const channel = await connection.createConfirmChannel();
		channel.on("error", err => options.logger.warn(`RabbitMQ consumer channel error: ${err.message}`));
		// Closed by anything but our own stop() or consumeAgain(), the channel takes the connection
		// down for a rebuild.
		channel.on("close", () => {
			if (!this.stopped && (this.channel === channel || this.channel === null)) connection.close().catch(() => undefined);
		});
		await channel.prefetch(options.prefetch);
		// Stopped, or a rebuild attached the consumer to a new connection while consumeAgain() opened this.
		if (this.stopped || this.connection !== connection) return void channel.close().catch(() => undefined);
		this.channel = channel;
		this.deliveredAt = Date.now();
		this.delivered = false;
		this.acks = new AckWatermark(channel);
		const { consumerTag } = await channel.consume(options.queue, message => {
			if (message) this.onMessage({ channel, message });
			// null: RabbitMQ cancelled the consumer (the queue went away with its node, or was
			// deleted). Closing the channel rebuilds the connection, which consumes afresh.
			else if (channel === this.channel) channel.close().catch(() => undefined);
		});
		this.consumerTag = consumerTag;
		// Counted from the consume-ok too: a slow one is no stall.
		this.deliveredAt = Date.now();
	}

	/**
	 * Consumes again on a new channel when the current one holds nothing and has received nothing
	 * for CONSUMER_STALL_MS while the queue has ready messages (see there), or when it is new and
	 * has delivered nothing at all (BLIND_REOPENS). Asking costs one round trip, and only while the
	 * consumer is idle. Should a message published a moment ago be counted before it is
	 * delivered, the cost is one new channel: this one holds nothing.
	 */
	private async checkStalled(): Promise<void> {
		const channel = this.channel;
		const quiet = (forMs: number) => channel === this.channel && this.acks?.holding === 0 && Date.now() - this.deliveredAt >= forMs;
		if (!channel || this.probing || !quiet(CONSUMER_STALL_MS)) return;
		const blind = !this.delivered && this.blindReopens < BLIND_REOPENS;
		if (blind && !quiet(CONSUMER_STALL_MS * 2 ** this.blindReopens)) return;
		this.probing = true;
		try {
			if (blind) {
				this.blindReopens++;
				this.options.logger.info(`RabbitMQ delivered nothing on a new channel for ${Date.now() - this.deliveredAt} ms: consuming on another`);
				await this.consumeAgain(channel);
			} else if ((await this.readyMessages()) > 0 && quiet(CONSUMER_STALL_MS)) {
				this.options.logger.warn(
					`RabbitMQ delivered nothing for ${CONSUMER_STALL_MS} ms while ${this.options.queue} has ready messages: consuming on a new channel`,
				);
				await this.consumeAgain(channel);
			}
		} catch {
			// Not connected, or the channel went meanwhile: the rebuild consumes afresh.
		} finally {
			this.probing = false;
		}
	}

	private async consumeAgain(stalled: ConfirmChannel): Promise<void> {
		const connection = this.connection;
		if (!connection || this.stopped) return;
		await this.open(connection);
		// Not replaced (stopped, or the connection rebuilt meanwhile): stop() or the rebuild has it.
		if (this.channel === stalled) return;
		// Whatever the stalled channel was given meanwhile goes back to the queue with it. Not
		// awaited: a stalled channel may be slow to answer its close, and the watch goes on.
		stalled.close().catch(() => undefined);
	}

	detach(): void {
		this.connection = null;
		this.channel = null;
		this.acks = null;
		this.consumerTag = null;
	}

	async stop(): Promise<void> {
		this.stopped = true;
		if (this.stallWatch) clearInterval(this.stallWatch);
		const channel = this.channel;
		if (channel && this.consumerTag) await channel.cancel(this.consumerTag).catch(() => undefined);
		await this.batcher.drain();
		if (channel && channel === this.channel) {
			await channel.waitForConfirms().catch(() => undefined);
			this.detach();
			await channel.close().catch(() => undefined);
		}
		this.onStopped();
	}

	/**
	 * Judges each message alone, cheapest test first: its size before a byte is read, a message
	 * that came back unacknowledged before it is parsed (it may be what took a worker down), its
	 * AMQP properties, then its body.
	 */
	private onMessage(delivery: Delivery): void {
		// A late delivery of a channel that is gone: RabbitMQ redelivers it on the new one.
		if (delivery.channel !== this.channel || !this.acks) return;
		if (this.watchesStalls) {
			this.deliveredAt = Date.now();
			this.delivered = true;
			this.blindReopens = 0;
		}
		const { message } = delivery;
		this.acks.received(message);
		const bytes = message.content.length;
		if (bytes > this.options.maxMessageBytes) {
			return this.deadLetter(delivery, {
				reason: "too_large",
				detail: `body of ${bytes} bytes is over MAX_MESSAGE_BYTES (${this.options.maxMessageBytes})`,
			});
		}
		if (message.fields.redelivered) {
			if (!this.queueCountsReturns) return this.returned(delivery);
			const returns = quorumReturnsOf(message);
			if (returns >= POISON_REDELIVERIES) return this.poison(delivery, returns);
		}
		const formatProblem = messageFormatProblem(message.properties.contentType, message.properties.contentEncoding);
		if (formatProblem) return this.deadLetter(delivery, { reason: "unreadable", detail: formatProblem });
		let decoded: ReturnType<typeof decodeTaskMessage>;
		try {
			decoded = decodeTaskMessage(message.content, message.properties.messageId);
		} catch (err) {
			// Thrown inside amqplib's delivery callback, an error would close the channel and bring
			// the same message back for ever: whatever cannot be decoded is dead-lettered.
			decoded = { ok: false, kind: "unreadable", reason: `decoding failed: ${(err as Error).message}` };
		}
		if (decoded.ok) this.batcher.push(decoded.task, delivery);
		else this.deadLetter(delivery, { reason: decoded.kind, detail: decoded.reason });
	}

	/**
	 * A message that came back unacknowledged to a classic queue, which counts nothing: its
	 * consumer died, lost its connection or stopped holding it. It goes to the back of the queue as
	 * a copy that counts its returns (REDELIVERIES_HEADER), before anything reads it, and after
	 * POISON_REDELIVERIES returns it is dead-lettered as poison: a message that takes down every
	 * worker that reads it cannot loop (docs/decisions/0010-poison-messages.md). A quorum queue
	 * counts returns itself, so there a returned message is read at once, and is poison at the same
	 * count.
	 */
	private returned(delivery: Delivery): void {
		const returns = redeliveriesOf(delivery.message) + 1;
		if (returns >= POISON_REDELIVERIES) return this.poison(delivery, returns);
		this.forward(delivery, this.options.queue, { [REDELIVERIES_HEADER]: returns }, () => undefined);
	}

	private poison(delivery: Delivery, returns: number): void {
		this.deadLetter(delivery, {
			reason: "poison",
			detail: `came back unacknowledged ${returns} times: a worker died, stalled or stopped holding it`,
		});
	}

	private settle(delivery: Delivery, outcome: Outcome, cause?: DeadLetterCause): void {
		// Delivery tags belong to their channel; if it is gone, RabbitMQ redelivers the message.
		if (delivery.channel !== this.channel || !this.acks) return;
		try {
			if (outcome === "stored") this.acks.settle(delivery.message);
			else if (outcome === "dead-letter") this.deadLetter(delivery, cause ?? { reason: "store_refused", detail: "the store refused the task" });
			// "released" stays unacked: stop() closes the channel, which hands it back to RabbitMQ.
		} catch {
			// The channel closed under us: the message stays unacked and is redelivered.
		}
	}

	/** Moves a message to the dead-letter queue with its cause in `x-dead-reason` ("<reason>: <detail>"). */
	private deadLetter(delivery: Delivery, { reason, detail }: DeadLetterCause): void {
		const { message } = delivery;
		this.options.logger.warn(`Dead-lettering message ${message.properties.messageId ?? "(no id)"}: ${reason}: ${detail}`);
		const headers = {
			"x-dead-reason": `${reason}: ${detail}`.slice(0, 1000),
			"x-original-queue": this.options.queue,
			"x-dead-at": new Date().toISOString(),
		};
		this.forward(delivery, this.deadLetterQueue, headers, () => this.options.onDeadLettered?.(reason));
	}

	/**
	 * Publishes a copy of the message to `queue` with `headers` added, and acks the message once
	 * RabbitMQ confirmed the copy. If RabbitMQ refuses it, the channel is closed: everything it
	 * holds unacked comes back, rather than the acks of every later batch waiting behind this one.
	 */
	private forward({ channel, message }: Delivery, queue: string, headers: Record<string, unknown>, onMoved: () => void): void {
		try {
			channel.publish("", queue, message.content, copyOptions(message, headers), err => {
				if (channel !== this.channel || !this.acks) return;
				if (err) return void channel.close().catch(() => undefined);
				this.acks.settle(message);
				onMoved();
			});
		} catch {
			// The channel closed under us: the message is redelivered and judged again.
		}
	}
}
