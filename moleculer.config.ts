import type { BrokerOptions, Errors } from "moleculer";
import { ClusterAmqpTransporter } from "./lib/cluster-amqp-transporter";
import { config } from "./lib/config";
import { internalMiddlewares } from "./middlewares/remote-call-metrics.middleware";
import { TaskQueueMiddleware } from "./middlewares/task-queue.middleware";
import { replCommands } from "./repl/commands";
import { passReplServerToCustomEval } from "./repl/custom-eval-this";

/**
 * Broker options of every node (read by moleculer-runner): only what differs from Moleculer's
 * defaults, each with its reason. Values come from the environment through lib/config.ts;
 * docs/configuration.md lists them.
 */
const brokerConfig: BrokerOptions = {
	// Keeps this cluster's nodes apart from any other cluster on the same RabbitMQ.
	namespace: config.namespace,
	// Unique per process (NODE_ID, else host name and pid): scaled containers never collide.
	nodeID: config.nodeID,

	// Console logger; LOG_FORMAT=json writes one JSON object per line for log collectors.
	logger: {
		type: "Console",
		options: {
			formatter: config.logFormat,
			colors: config.logFormat !== "json",
			moduleColors: false,
			autoPadding: false,
		},
	},
	// LOG_LEVEL; the gateways log single requests at debug only.
	logLevel: config.logLevel,

	// Node-to-node RPC over RabbitMQ; none in the embedded default, where one process runs it all.
	// Moleculer's AMQP transporter with every node of RABBIT_HOSTS: each (re)connect, 5 s apart,
	// takes the next URL; lib/cluster-amqp-transporter.ts says what it adds for a cluster.
	// prefetch 100: with the default of 1 a node handles one remote call at a time.
	transporter: config.rabbitUrl
		? new ClusterAmqpTransporter({ url: config.rabbitUrls, prefetch: 100, eventTimeToLive: 5000, heartbeatTimeToLive: 5000 })
		: null,
	// A remote call that takes longer than REQUEST_TIMEOUT_MS fails instead of hanging (default: never).
	requestTimeout: config.requestTimeoutMs,
	// Guards against call loops between services (default: unlimited).
	maxCallLevel: 100,
	// Graceful stop: a service waits up to 10 s (default 5 s, off) for its running calls before it stops.
	tracking: { enabled: true, shutdownTimeout: 10_000 },
	// Stops calling a node that keeps failing (default: off). 503s are left out: they mean "retry later".
	circuitBreaker: {
		enabled: true,
		check: (err: Error) => {
			const code = (err as Errors.MoleculerError).code;
			return code >= 500 && code !== 503;
		},
	},

	// Prometheus metrics on METRICS_PORT (/metrics) when it is set: Moleculer's own and the task
	// metrics of lib/task-metrics.ts. On BIND_ADDRESS, as the gateways (Moleculer's default: every interface).
	metrics: {
		enabled: config.metricsPort !== null,
		reporter: { type: "Prometheus", options: { host: config.bindAddress, port: config.metricsPort ?? 3030, path: "/metrics" } },
		// No quantile windows for Moleculer's timing histograms (moleculer_request_time, ...): they
		// keep every call of the last minute in memory and sort them all on each scrape, and their
		// quantile lines are not valid in a Prometheus histogram. Prometheus computes quantiles
		// from the buckets (histogram_quantile), across nodes, which per-node quantiles cannot be.
		defaultQuantiles: null as unknown as number[],
	},
	// Tracing to the console when TRACING=on, for debugging a flow.
	tracing: {
		enabled: config.tracing,
		exporter: { type: "Console", options: { width: 100, colors: config.logFormat !== "json" } },
	},

	// broker.taskQueue: the durable task queue every gateway and worker of the node shares; then
	// Moleculer's own middlewares, in its order, without the metrics of local calls (see
	// middlewares/remote-call-metrics.middleware.ts for why).
	middlewares: [TaskQueueMiddleware(), ...internalMiddlewares()],
	internalMiddlewares: false,
	// The project's REPL commands: queue, post, latest.
	replOptions: { customCommands: replCommands as unknown as NonNullable<BrokerOptions["replOptions"]>["customCommands"], delimiter: "notes-tasks $" },

	// One stop per broker, shared by every caller. The REPL's `quit` stops the broker, and the end
	// of its input (Ctrl+D, or piped commands running out) stops it again; a second stop would
	// unbind the AMQP queues once more on the channel the first is closing, which amqplib
	// reports as "Channel ended, no reply will be forthcoming" with a stack trace.
	// A node that opens a REPL (moleculer-runner --repl) first makes Node 26 call moleculer-repl's
	// eval on the REPL server again (see repl/custom-eval-this.ts).
	created(broker) {
		const stop = broker.stop.bind(broker);
		let stopping: Promise<void> | undefined;
		broker.stop = () => (stopping ??= stop());
		const repl = broker.repl.bind(broker);
		broker.repl = () => {
			passReplServerToCustomEval();
			return repl();
		};
	},

	// `npm start` (the embedded default) says how to try it.
	started(broker) {
		const gateways = broker.registry.getServiceList({ onlyLocal: true }).filter(service => service.name.startsWith("api-"));
		if (!config.rabbitUrl && gateways.length > 0) {
			broker.logger.info(
				[
					"Embedded cluster ready (in-process queue, in-memory store). Try:",
					`  curl -i -X POST http://localhost:${config.flaskPort}/tasks -H 'Content-Type: application/json' -d '{"title": "Test task from Flask"}'`,
					`  curl http://localhost:${config.goPort}/tasks`,
				].join("\n"),
			);
		}
	},
};

export = brokerConfig;
