import { readFileSync } from "node:fs";
import os from "node:os";

/**
 * Every setting the cluster reads from its environment, in one place.
 *
 * The original's variables keep their names and defaults. RABBIT_HOST (or RABBIT_HOSTS) and MONGO_URI are
 * the switches between the two ways to run: unset, a node uses the in-process queue and the
 * in-memory store (the embedded default of `npm start`); set, it joins the real cluster.
 */
export interface ClusterConfig {
	nodeID: string;
	namespace: string;
	logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
	logFormat: "full" | "short" | "simple" | "json";
	/** amqp:// URL of the first RabbitMQ node, or null for the embedded in-process queue. */
	rabbitUrl: string | null;
	/** amqp:// URLs of every RabbitMQ node to try, in order (RABBIT_HOSTS); empty when embedded. */
	rabbitUrls: string[];
	taskQueue: string;
	/** classic, as in the original, or quorum: replicated over the cluster's nodes (Raft). */
	taskQueueType: QueueType;
	/**
	 * Unacknowledged deliveries a worker holds at once; a store batch holds up to half of them.
	 * 200, so that a full batch is 100 tasks: FerretDB commits an insert 100 documents per
	 * transaction, and a batch of 130 cost it two commits (9% more CPU per task than 100 or 200).
	 */
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

export type QueueType = "classic" | "quorum";

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

function port(name: string, raw: string): number {
	const value = Number(raw);
	if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`${name} has a bad port "${raw}"`);
	return value;
}

/**
 * RabbitMQ nodes as host and port: RABBIT_HOSTS ("host:port,host:port", the port defaulting to
 * RABBIT_PORT), else RABBIT_HOST and RABBIT_PORT as in the original. RABBIT_HOSTS wins, so that a
 * cluster overlay can add it beside the .env that still sets RABBIT_HOST.
 */
function rabbitNodes(env: Env): { host: string; port: number }[] {
	const defaultPort = integer(env, "RABBIT_PORT", 5672, 1);
	const list = optionalText(env, "RABBIT_HOSTS");
	if (!list) {
		const host = optionalText(env, "RABBIT_HOST");
		return host ? [{ host, port: defaultPort }] : [];
	}
	return list.split(",").map(entry => {
		// host, host:port, [v6 address] or [v6 address]:port
		const match = /^(\[[^\]]+\]|[^:\s]+)(?::(\S*))?$/.exec(entry.trim());
		if (!match) throw new Error(`RABBIT_HOSTS must be a comma-separated list of host:port, got "${list}"`);
		return { host: match[1], port: match[2] === undefined ? defaultPort : port("RABBIT_HOSTS", match[2]) };
	});
}

function rabbitUrls(env: Env): string[] {
	const user = encodeURIComponent(text(env, "RABBIT_USER", "guest"));
	const password = encodeURIComponent(text(env, "RABBIT_PASSWORD", "guest"));
	const vhost = encodeURIComponent(text(env, "RABBIT_VHOST", "/"));
	return rabbitNodes(env).map(({ host, port }) => `amqp://${user}:${password}@${host}:${port}/${vhost}`);
}

/** Settings that may come from a file instead, NAME_FILE naming it: Docker and Swarm secrets. */
const FILE_SETTINGS = ["RABBIT_USER", "RABBIT_PASSWORD", "MONGO_URI"] as const;

/** The environment with each set NAME_FILE read into NAME (without its final newline); the file wins. */
function withFileSettings(env: Env): Env {
	const resolved = { ...env };
	for (const name of FILE_SETTINGS) {
		const file = env[`${name}_FILE`]?.trim();
		if (!file) continue;
		try {
			resolved[name] = readFileSync(file, "utf8").replace(/\r?\n$/, "");
		} catch (err) {
			throw new Error(`${name}_FILE names a file that cannot be read: ${(err as Error).message}`, { cause: err });
		}
	}
	return resolved;
}

export function loadConfig(given: Env = process.env): ClusterConfig {
	const env = withFileSettings(given);
	const metricsPort = integer(env, "METRICS_PORT", 0);
	const urls = rabbitUrls(env);
	return {
		nodeID: text(env, "NODE_ID", `${os.hostname()}-${process.pid}`),
		namespace: text(env, "NAMESPACE", "notes-tasks"),
		logLevel: oneOf(env, "LOG_LEVEL", ["fatal", "error", "warn", "info", "debug", "trace"], "info"),
		logFormat: oneOf(env, "LOG_FORMAT", ["full", "short", "simple", "json"], "short"),
		rabbitUrl: urls[0] ?? null,
		rabbitUrls: urls,
		taskQueue: text(env, "RABBIT_QUEUE", "task_queue"),
		taskQueueType: oneOf(env, "RABBIT_QUEUE_TYPE", ["classic", "quorum"], "classic"),
		workerPrefetch: integer(env, "WORKER_PREFETCH", 200, 1),
		workerBatchWaitMs: integer(env, "WORKER_BATCH_WAIT_MS", 50),
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
