import * as Moleculer from "moleculer";
import type { Middleware, ServiceBroker } from "moleculer";

type MiddlewareFactory = (broker: ServiceBroker) => Middleware & { localAction?: unknown };

/**
 * Moleculer's Metrics middleware (moleculer_request_*, moleculer_event_*, transit and transporter
 * counters) without its wrapper of local action calls. That wrapper counts, times and labels every
 * call twice per request on a gateway (the route's context and the action's), on the hot path,
 * for series an operator does not ask for. The task metrics (lib/task-metrics.ts) count
 * what an operator asks of the hot path; calls between nodes (the REPL's, a gateway's read on
 * another node) are still counted here.
 */
export function RemoteCallMetricsMiddleware(broker: ServiceBroker): Middleware {
	const metrics = (Moleculer as unknown as { Middlewares: { Metrics: MiddlewareFactory } }).Middlewares.Metrics(broker);
	const { localAction: _dropped, ...kept } = metrics;
	return kept;
}

/** Moleculer's internal middlewares, in Moleculer's order, with RemoteCallMetricsMiddleware for Metrics. */
export function internalMiddlewares(): (string | Middleware)[] {
	// Moleculer calls a middleware given as a function with the broker; its typings know only objects.
	const remoteCallMetrics = RemoteCallMetricsMiddleware as unknown as Middleware;
	return Moleculer.INTERNAL_MIDDLEWARES.map(name => (name === "Metrics" ? remoteCallMetrics : name));
}
