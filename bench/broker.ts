import { ServiceBroker, type BrokerOptions } from "moleculer";
import brokerConfig from "../moleculer.config";

/**
 * A broker built as every node builds its own, from moleculer.config.ts, so that a probe in one
 * process measures the nodes' middlewares, timeouts and metrics rather than options of its own.
 * The environment decides as for a node: without RABBIT_HOST and MONGO_URI the broker runs on the
 * in-process queue and the in-memory store; with them, on the stack's RabbitMQ and store. The
 * bench's output is its own, so the broker does not log.
 */
export function nodeBroker(overrides: BrokerOptions = {}): ServiceBroker {
	return new ServiceBroker({ ...brokerConfig, logger: false, ...overrides });
}

/** moleculer.config.ts's metrics, on or off, with the Prometheus reporter on a port of its own. */
export function nodeMetrics(enabled: boolean): BrokerOptions["metrics"] {
	const metrics = brokerConfig.metrics as Exclude<BrokerOptions["metrics"], boolean | undefined>;
	// Port 0: whatever port is free, away from the local stack's nodes.
	return { ...metrics, enabled, reporter: { type: "Prometheus", options: { port: 0, path: "/metrics" } } };
}
