import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { ServiceBroker, type BrokerOptions, type ServiceSchema } from "moleculer";
import ApiFlaskService from "../../services/api-flask.service";
import ApiGoService from "../../services/api-go.service";
import TasksService from "../../services/tasks.service";
import WorkerGoService from "../../services/worker-go.service";
import WorkerPyService from "../../services/worker-py.service";
import { MemoryTaskQueue } from "../../lib/queue/memory-task-queue";
import { config, type ClusterConfig } from "../../lib/config";
import { TaskQueueMiddleware } from "../../middlewares/task-queue.middleware";
import type { TaskGatewaySettings } from "../../mixins/task-gateway.mixin";

export interface EmbeddedCluster {
	broker: ServiceBroker;
	/** Base URLs of the two gateways, on ports the OS chose. */
	flaskUrl: string;
	goUrl: string;
	queue: MemoryTaskQueue;
	stop(): Promise<void>;
}

/** A gateway service on a port the OS chooses, with `settings` over its own. */
export function onFreePort(schema: ServiceSchema<TaskGatewaySettings>, settings: Partial<TaskGatewaySettings> = {}): ServiceSchema<TaskGatewaySettings> {
	return { ...schema, settings: { ...schema.settings, ...settings, port: 0 } as TaskGatewaySettings };
}

/** Base URL of a gateway service of `broker`. */
export function urlOf(broker: ServiceBroker, serviceName: string): string {
	const service = broker.getLocalService(serviceName) as unknown as { server: Server };
	return `http://127.0.0.1:${(service.server.address() as AddressInfo).port}`;
}

export interface EmbeddedOptions {
	/** Broker options on top of the test defaults, e.g. metrics. */
	broker?: BrokerOptions;
	/** Settings of the node's task queue, when a test needs other than lib/config.ts's. */
	queue?: Partial<ClusterConfig>;
	/** Settings of both gateways on top of their own. */
	gateway?: Partial<TaskGatewaySettings>;
}

/** Every role in one broker, as `npm start` runs them: in-process queue, in-memory store. */
export async function startEmbeddedCluster(nodeID = "unit-node", transporter: "Fake" | null = null, options: EmbeddedOptions = {}): Promise<EmbeddedCluster> {
	const broker = new ServiceBroker({
		nodeID,
		transporter,
		logger: false,
		tracking: { enabled: true, shutdownTimeout: 5000 },
		middlewares: [TaskQueueMiddleware({ ...config, ...options.queue })],
		...options.broker,
	});
	broker.createService(TasksService);
	broker.createService(WorkerPyService);
	broker.createService(WorkerGoService);
	broker.createService(onFreePort(ApiFlaskService, options.gateway));
	broker.createService(onFreePort(ApiGoService, options.gateway));
	await broker.start();
	// The services share the broker's queue; holding a reference here lets tests inspect it.
	const queue = broker.taskQueue as MemoryTaskQueue;
	return {
		broker,
		flaskUrl: urlOf(broker, "api-flask"),
		goUrl: urlOf(broker, "api-go"),
		queue,
		stop: () => broker.stop(),
	};
}

/**
 * The embedded cluster of the describe block that calls this: started before its first test and
 * stopped after its last, with every jest.spyOn undone after each test. The getter throws if the
 * cluster did not start, rather than let a test fail on `undefined`.
 */
export function embeddedClusterForSuite(nodeID: string): () => EmbeddedCluster {
	let cluster: EmbeddedCluster | undefined;
	beforeAll(async () => {
		cluster = await startEmbeddedCluster(nodeID);
	});
	afterAll(() => cluster?.stop());
	afterEach(() => jest.restoreAllMocks());
	return () => {
		if (!cluster) throw new Error(`the embedded cluster ${nodeID} did not start`);
		return cluster;
	};
}
