import { Transporters } from "moleculer";

type AmqpOptions = ConstructorParameters<typeof Transporters.AMQP>[0] & object;

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
 */
export class ClusterAmqpTransporter extends Transporters.AMQP {
	constructor(options: AmqpOptions & { url: string[] }) {
		super(options.url.length > 1 ? { ...options, queueOptions: { ...options.queueOptions, durable: false } } : options);
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
