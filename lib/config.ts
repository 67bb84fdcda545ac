import os from "node:os";

/**
 * Every setting the cluster reads from its environment, in one place.
 *
 * The original's variables keep their names and defaults. RABBIT_HOST and MONGO_URI are
 * the switches between the two ways to run: unset, a node uses the in-process queue and the
 * in-memory store (the embedded default of `npm start`); set, it joins the real cluster.
 */
export interface ClusterConfig {
	nodeID: string;
	namespace: string;
	logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
	logFormat: "full" | "short" | "simple" | "json";
	/** amqp:// URL of RabbitMQ, or null for the embedded in-process queue. */
	rabbitUrl: string | null;
	taskQueue: string;
	/** Unacknowledged deliveries a worker holds at once; a store batch holds up to half of them. */
	workerPrefetch: number;
	/** Longest a worker lets a short store batch wait for more tasks, from its first one. */
	workerBatchWaitMs: number;
	/** How long a gateway waits for RabbitMQ to confirm a publish before answering 503. */
	publishTimeoutMs: number;
	/** Store attempts for one batch before its messages go to the dead-letter queue. */
	storeMaxAttempts: number;
	mongoUri: string | null;
	dbName: string;
	flaskPort: number;
	goPort: number;
	/** Largest accepted request body, in bytes; Nginx's client_max_body_size agrees. */
	maxBodyBytes: number;
	requestTimeoutMs: number;
	/** Port of the Prometheus metrics endpoint, or null to keep metrics off. */
	metricsPort: number | null;
	tracing: boolean;
}

type Env = Record<string, string | undefined>;

function text(env: Env, name: string, fallback: string): string {
	const value = env[name]?.trim();
	return value ? value : fallback;
}

function optionalText(env: Env, name: string): string | null {
	const value = env[name]?.trim();
	return value ? value : null;
}

function integer(env: Env, name: string, fallback: number, min = 0): number {
	const raw = env[name]?.trim();
	if (!raw) return fallback;
	const value = Number(raw);
	if (!Number.isInteger(value) || value < min) {
		throw new Error(`${name} must be an integer >= ${min}, got "${raw}"`);
	}
	return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
	const value = text(env, name, fallback);
	if (!allowed.includes(value as T)) {
		throw new Error(`${name} must be one of ${allowed.join(", ")}, got "${value}"`);
	}
	return value as T;
}

function rabbitUrl(env: Env): string | null {
	const host = optionalText(env, "RABBIT_HOST");
	if (!host) return null;
	const user = encodeURIComponent(text(env, "RABBIT_USER", "guest"));
	const password = encodeURIComponent(text(env, "RABBIT_PASSWORD", "guest"));
	const vhost = encodeURIComponent(text(env, "RABBIT_VHOST", "/"));
	const port = integer(env, "RABBIT_PORT", 5672, 1);
	return `amqp://${user}:${password}@${host}:${port}/${vhost}`;
}

export function loadConfig(env: Env = process.env): ClusterConfig {
	const metricsPort = integer(env, "METRICS_PORT", 0);
	return {
		nodeID: text(env, "NODE_ID", `${os.hostname()}-${process.pid}`),
		namespace: text(env, "NAMESPACE", "notes-tasks"),
		logLevel: oneOf(env, "LOG_LEVEL", ["fatal", "error", "warn", "info", "debug", "trace"], "info"),
		logFormat: oneOf(env, "LOG_FORMAT", ["full", "short", "simple", "json"], "short"),
		rabbitUrl: rabbitUrl(env),
		taskQueue: text(env, "RABBIT_QUEUE", "task_queue"),
		workerPrefetch: integer(env, "WORKER_PREFETCH", 400, 1),
		workerBatchWaitMs: integer(env, "WORKER_BATCH_WAIT_MS", 20),
		publishTimeoutMs: integer(env, "PUBLISH_TIMEOUT_MS", 2000, 1),
		storeMaxAttempts: integer(env, "STORE_MAX_ATTEMPTS", 10, 1),
		mongoUri: optionalText(env, "MONGO_URI"),
		dbName: text(env, "DB_NAME", "mydb"),
		flaskPort: integer(env, "FLASK_PORT", 5001),
		goPort: integer(env, "GO_PORT", 5002),
		maxBodyBytes: integer(env, "MAX_BODY_BYTES", 16384, 256),
		requestTimeoutMs: integer(env, "REQUEST_TIMEOUT_MS", 10000, 1),
		metricsPort: metricsPort > 0 ? metricsPort : null,
		tracing: text(env, "TRACING", "off") === "on",
	};
}

export const config = loadConfig();
