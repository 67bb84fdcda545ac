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
	 * transaction, and a larger batch costs it a second, short commit.
	 */
	workerPrefetch: number;
	/** Longest a worker lets a short store batch wait for more tasks, from its first one. */
	workerBatchWaitMs: number;
	/** How long a gateway waits for RabbitMQ to confirm a publish before answering 503. */
	publishTimeoutMs: number;
	/**
	 * Largest message body a worker reads; larger ones are dead-lettered unparsed (too_large).
	 * Far above any task, and with WORKER_PREFETCH far inside a worker's heap (docs/hostile-input.md).
	 */
	maxMessageBytes: number;
	mongoUri: string | null;
	dbName: string;
	flaskPort: number;
	goPort: number;
	/**
	 * Address the gateways' HTTP ports and the metrics port listen on: loopback unless a deployment
	 * says otherwise (containers need 0.0.0.0), so that only Nginx is meant for other hosts.
	 */
	bindAddress: string;
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

/**
 * A secret from NAME, or from the file that NAME_FILE names (Docker and Kubernetes secrets are
 * files: /run/secrets/<name>), without the file's trailing line break. Setting both is refused:
 * which one wins would be a guess.
 */
export function secret(env: Env, name: string): string | null {
	const path = optionalText(env, `${name}_FILE`);
	if (!path) return optionalText(env, name);
	if (optionalText(env, name)) throw new Error(`Set ${name} or ${name}_FILE, not both`);
	let value: string;
	try {
		value = readFileSync(path, "utf8").replace(/\r?\n$/, "");
	} catch (err) {
		throw new Error(`${name}_FILE names ${path}, which cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
	}
	if (!value.trim()) throw new Error(`${name}_FILE names ${path}, which is empty`);
	return value;
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
	const user = encodeURIComponent(secret(env, "RABBIT_USER") ?? "guest");
	const password = encodeURIComponent(secret(env, "RABBIT_PASSWORD") ?? "guest");
	const vhost = encodeURIComponent(text(env, "RABBIT_VHOST", "/"));
	return rabbitNodes(env).map(({ host, port }) => `amqp://${user}:${password}@${host}:${port}/${vhost}`);
}

/**
 * MONGO_URI (or MONGO_URI_FILE), with MONGO_USER and MONGO_PASSWORD (or their _FILE) put in when
 * set: the URI can then stay a plain setting while the password is a secret. The users of the
 * compose deployment live in the admin database, hence authSource=admin unless the URI names one.
 */
function mongoUri(env: Env): string | null {
	const uri = secret(env, "MONGO_URI");
	const user = secret(env, "MONGO_USER");
	if (!uri || !user) return uri;
	const password = secret(env, "MONGO_PASSWORD");
	if (!password) throw new Error("MONGO_USER is set without MONGO_PASSWORD or MONGO_PASSWORD_FILE");
	return mongoUriWithCredentials(uri, user, password);
}

/** A mongodb:// URI with user and password in it, authenticating against admin unless it names an authSource. */
export function mongoUriWithCredentials(uri: string, user: string, password: string): string {
	const match = /^(mongodb(?:\+srv)?:\/\/)([^/?#]*)([^?#]*)(\?[^#]*)?$/.exec(uri);
	if (!match) throw new Error("MONGO_URI must be a mongodb:// or mongodb+srv:// URI");
	const [, scheme, hosts, path, query = ""] = match;
	if (hosts.includes("@")) throw new Error("MONGO_URI already holds credentials: set them there or in MONGO_USER, not both");
	const authSource = /[?&]authSource=/.test(query) ? "" : `${query ? "&" : "?"}authSource=admin`;
	return `${scheme}${encodeURIComponent(user)}:${encodeURIComponent(password)}@${hosts}${path || "/"}${query}${authSource}`;
}

export function loadConfig(env: Env = process.env): ClusterConfig {
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
		maxMessageBytes: integer(env, "MAX_MESSAGE_BYTES", 65536, 1024),
		mongoUri: mongoUri(env),
		dbName: text(env, "DB_NAME", "mydb"),
		flaskPort: integer(env, "FLASK_PORT", 5001),
		goPort: integer(env, "GO_PORT", 5002),
		bindAddress: text(env, "BIND_ADDRESS", "127.0.0.1"),
		maxBodyBytes: integer(env, "MAX_BODY_BYTES", 16384, 256),
		requestTimeoutMs: integer(env, "REQUEST_TIMEOUT_MS", 10000, 1),
		metricsPort: metricsPort > 0 ? metricsPort : null,
		tracing: text(env, "TRACING", "off") === "on",
	};
}

export const config = loadConfig();
