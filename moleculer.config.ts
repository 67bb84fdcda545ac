import type { BrokerOptions, Errors } from "moleculer";
import { ClusterAmqpTransporter } from "./lib/cluster-amqp-transporter";
import { config } from "./lib/config";
import { replCommands } from "./lib/repl-commands";

/**
 * Broker options of every node (read by moleculer-runner). Each value comes from the
 * environment through lib/config.ts; the README's configuration table lists them.
 */
const brokerConfig: BrokerOptions = {
	// Keeps this cluster's nodes apart from any other cluster on the same RabbitMQ.
	namespace: config.namespace,
	// Unique per process (NODE_ID, else host name and pid): scaled containers never collide.
	nodeID: config.nodeID,
	// Nothing extra in the node info: the registry already shows which services each node runs.
	metadata: {},

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
	// prefetch 100: the default of 1 serialises remote calls (about 33/s here against 1,100/s).
	transporter: config.rabbitUrl
		? new ClusterAmqpTransporter({ url: config.rabbitUrls, prefetch: 100, eventTimeToLive: 5000, heartbeatTimeToLive: 5000 })
		: null,
	// JSON: the payloads are small and V8's JSON is as fast as the binary serializers for them.
	serializer: "JSON",

	// A remote call that takes longer than REQUEST_TIMEOUT_MS fails instead of hanging.
	requestTimeout: config.requestTimeoutMs,
	// Off: the durable work has its own retries (queue redelivery); retrying RPC hides faults.
	retryPolicy: {
		enabled: false,
		retries: 5,
		delay: 100,
		maxDelay: 1000,
		factor: 2,
		check: (err: Error) => Boolean((err as Errors.MoleculerRetryableError).retryable),
	},

	// Params are not cloned between local services: nobody mutates them.
	contextParamsCloning: false,
	// Guards against call loops between services.
	maxCallLevel: 100,
	// Heartbeats every 10 s; a node silent for 30 s is removed from the registry.
	heartbeatInterval: 10,
	heartbeatTimeout: 30,

	// Graceful stop: a service waits up to 10 s for its running calls before it stops.
	tracking: { enabled: true, shutdownTimeout: 10_000 },

	// Moleculer balances calls itself rather than leaving it to the transporter.
	disableBalancer: false,
	// Round robin across nodes, but a service on this node is always called first.
	registry: { strategy: "RoundRobin", preferLocal: true, stopDelay: 100, discoverer: "Local" },

	// Stops calling a node that keeps failing; 503s are left out because they mean "retry later".
	circuitBreaker: {
		enabled: true,
		threshold: 0.5,
		windowTime: 60,
		minRequestCount: 20,
		halfOpenTime: 10_000,
		check: (err: Error) => {
			const code = (err as Errors.MoleculerError).code;
			return code >= 500 && code !== 503;
		},
	},
	// Off: gateways and workers bound their own concurrency (HTTP connections, queue prefetch).
	bulkhead: { enabled: false, concurrency: 10, maxQueueSize: 100 },

	// Transit defaults, written out: queue limit, chunking, reconnection and protocol version check.
	transit: {
		maxQueueSize: 50_000,
		maxChunkSize: 256 * 1024,
		disableReconnect: false,
		disableVersionCheck: false,
	},

	// Moleculer's own id generator.
	uidGenerator: undefined,
	// Errors go back to the caller (moleculer-web turns them into JSON responses).
	errorHandler: null,
	// Nothing is cached: lists change with every processed task.
	cacher: null,
	// fastest-validator checks every action's params.
	validator: true,
	// Errors from other nodes are rebuilt with Moleculer's default regenerator.
	errorRegenerator: null,

	// Prometheus metrics on METRICS_PORT (/metrics) when it is set.
	metrics: {
		enabled: config.metricsPort !== null,
		reporter: { type: "Prometheus", options: { port: config.metricsPort ?? 3030, path: "/metrics" } },
	},
	// Tracing to the console when TRACING=on, for debugging a flow.
	tracing: {
		enabled: config.tracing,
		exporter: { type: "Console", options: { width: 100, colors: config.logFormat !== "json" } },
	},

	// $node.* services, used by the REPL's `nodes` and `services` commands.
	internalServices: true,
	// Moleculer's built-in middlewares (validation, timeouts, tracking, circuit breaker, ...).
	internalMiddlewares: true,
	// How often, and how long, a service waits for the services it depends on (0: forever).
	dependencyInterval: 1000,
	dependencyTimeout: 0,
	// Never in production: restarts services on file changes.
	hotReload: false,
	// No project middlewares.
	middlewares: [],
	// The project's REPL commands: queue, post, latest.
	replOptions: { customCommands: replCommands as unknown as NonNullable<BrokerOptions["replOptions"]>["customCommands"], delimiter: "notes-tasks $" },
	// Moleculer handles SIGTERM/SIGINT itself and stops the broker gracefully.
	skipProcessEventRegistration: false,
	// No trimming of large objects in logs or messages.
	maxSafeObjectSize: null,

	// One stop per broker, shared by every caller. The REPL's `quit` stops the broker, and the end
	// of its input (Ctrl+D, or piped commands running out) stops it again; a second stop would
	// unbind the AMQP queues once more on the channel the first is closing, which amqplib
	// reports as "Channel ended, no reply will be forthcoming" with a stack trace.
	created(broker) {
		const stop = broker.stop.bind(broker);
		let stopping: Promise<void> | undefined;
		broker.stop = () => (stopping ??= stop());
	},

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
