import { Transporters } from "moleculer";

type AmqpOptions = ConstructorParameters<typeof Transporters.AMQP>[0] & object;
/** The transit's error handler, as Moleculer types it. */
type ErrorCallback = Parameters<InstanceType<typeof Transporters.Base>["connect"]>[0];

/**
 * Moleculer's AMQP transporter, made to survive the loss of one node of a RabbitMQ cluster.
 *
 * - Moleculer declares its queues durable, and a durable classic queue whose node is down can be
 *   declared on no other node ("home node ... is down or inaccessible") until that node is back:
 *   a node that reconnects elsewhere could not subscribe. With more than one RabbitMQ node they
 *   are declared transient, which RabbitMQ deletes with their node, so they are declared afresh
 *   on the node the transporter reconnects to. (They carry nothing that must outlive a broker:
 *   Moleculer's messages are not persistent.)
 * - When such a queue goes away, RabbitMQ cancels its consumers on the other nodes. Moleculer 0.15
 *   reads `.content` of the null that amqplib hands it then, and throws inside amqplib. Here the
 *   connection is closed instead, so that Moleculer reconnects and subscribes again.
 * - A connect whose channel or subscriptions fail (a queue on a node that is just stopping)
 *   leaves its connection open in Moleculer 0.15. When that connection closes later, with its
 *   node, Moleculer marks the transporter disconnected although a newer connection works, and
 *   stops sending. Here the failed attempt's connection is closed at once.
 */
export class ClusterAmqpTransporter extends Transporters.AMQP {
	constructor(options: AmqpOptions & { url: string[] }) {
		super(options.url.length > 1 ? { ...options, queueOptions: { ...options.queueOptions, durable: false } } : options);
	}

	connect(errorCallback?: ErrorCallback): Promise<void> {
		const connect = super.connect as (this: unknown, onError?: ErrorCallback) => Promise<void>;
		return connect.call(this, errorCallback).catch((err: Error) => {
			(this.connection as { close(): Promise<void> } | null)?.close().catch(() => undefined);
			throw err;
		});
	}

	_consumeCB(cmd: string, needAck?: boolean): (message: unknown) => void | Promise<void> {
		const consume = super._consumeCB(cmd, needAck);
		return message => {
			if (message) return consume(message);
			this.logger.warn(`RabbitMQ cancelled the consumer of ${cmd} (its queue went away with its node); reconnecting`);
			(this.connection as { close(): Promise<void> } | null)?.close().catch(() => undefined);
		};
	}
}
