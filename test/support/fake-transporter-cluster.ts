import type { ServiceBroker as Broker, ServiceSchema } from "moleculer";
import { ServiceBroker } from "moleculer";
import { MemoryTaskQueue } from "../../lib/queue/memory-task-queue";
import type { TaskGatewaySettings } from "../../mixins/task-gateway.mixin";
import { onFreePort, urlOf } from "./embedded-cluster";
import { SILENT_LOGGER } from "./silent-logger";

export interface GatewayNode {
	broker: Broker;
	/** Base URL of the node's gateway. */
	url: string;
}

/**
 * Nodes of one cluster in this process, talking over Moleculer's Fake transporter (an in-process
 * bus), as the real nodes talk over RabbitMQ. They share one in-process task queue, as the real
 * nodes share task_queue; a node that stops leaves it, and the tasks on it, to the others.
 */
export class FakeTransporterCluster {
	readonly queue = new MemoryTaskQueue({ queue: "task_queue", prefetch: 200, batchWaitMs: 0, logger: SILENT_LOGGER });
	private readonly brokers = new Set<Broker>();

	/** `namespace` keeps this cluster apart from any other on the process's Fake bus. */
	constructor(private readonly namespace: string) {}

	/** A node with the services `create` makes on its broker. */
	async startNode(nodeID: string, create: (broker: Broker) => void): Promise<Broker> {
		const broker = this.newBroker(nodeID);
		create(broker);
		await broker.start();
		return broker;
	}

	/** A node running `gateway` on a free port, with `settings` over the gateway's own, beside what `create` makes. */
	async startGateway(
		nodeID: string,
		gateway: ServiceSchema<TaskGatewaySettings>,
		settings: Partial<TaskGatewaySettings> = {},
		create: (broker: Broker) => void = () => undefined,
	): Promise<GatewayNode> {
		const broker = await this.startNode(nodeID, created => {
			created.createService(onFreePort(gateway, settings));
			create(created);
		});
		return { broker, url: urlOf(broker, gateway.name) };
	}

	private newBroker(nodeID: string): Broker {
		const queue = this.queue;
		const broker = new ServiceBroker({
			namespace: this.namespace,
			nodeID,
			transporter: "Fake",
			logger: false,
			middlewares: [{ name: "SharedTaskQueue", created: (created: Broker) => Object.defineProperty(created, "taskQueue", { get: () => queue }) }],
		});
		this.brokers.add(broker);
		return broker;
	}

	async stopNode(broker: Broker): Promise<void> {
		this.brokers.delete(broker);
		await broker.stop();
	}

	async stop(): Promise<void> {
		await Promise.all([...this.brokers].map(broker => this.stopNode(broker)));
		await this.queue.close();
	}
}
