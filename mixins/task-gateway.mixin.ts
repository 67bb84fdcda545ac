import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { config } from "../lib/config";
import { MethodNotAllowedError, QueueUnavailableError } from "../lib/errors";
import { assertJsonBody, jsonBodyParser } from "../lib/http/request-guards";
import { idempotencyKeyOf, taskIdOfKey, taskOfRetry } from "../lib/http/idempotency";
import { errorBody, publicError, requestIdOf, statusOf } from "../lib/http/public-errors";
import { newTask, titleRule, type AcceptedTask, type QueuedTask } from "../lib/task";
import type { TaskQueue } from "../lib/queue/task-queue";
import type { KeyClaim } from "../lib/store/key-claims";
import { asStoreReadError } from "../lib/store/read-shedding";
import { pageRules } from "../lib/store/task-reads";
import { asMixin } from "./as-mixin";
import { taskMetricsOf, type TaskMetrics } from "../lib/task-metrics";

/** What a gateway service sets (port, source), and the knobs it may set; the mixin gives their defaults. */
export interface TaskGatewaySettings {
	port: number;
	/** The `source` stamp of the tasks this gateway accepts: "flask" or "go". */
	source: string;
	/** Address the HTTP port listens on (BIND_ADDRESS). */
	ip?: string;
	/** Largest accepted request body, in bytes (MAX_BODY_BYTES). */
	maxBodyBytes?: number;
	/**
	 * Whether single requests are logged (at debug): on at LOG_LEVEL debug or trace. Off, they
	 * are not even built: moleculer-web builds each request's log lines (coloured, timed) even
	 * when the logger drops them.
	 */
	requestLogging?: boolean;
	/** Longest a keyed POST waits for the store to claim its key; then it is accepted unclaimed. */
	keyClaimTimeoutMs?: number;
	/** Above Nginx's upstream keepalive_timeout, so that Nginx always closes idle connections first. */
	keepAliveTimeoutMs?: number;
}

/** A gateway's settings once the mixin's defaults are in. */
type GatewaySettings = ApiSettingsSchema & Required<TaskGatewaySettings>;

interface GatewayMeta {
	$statusCode?: number;
	$responseHeaders?: Record<string, string>;
	idempotencyKey?: string;
	pathPrefix?: string;
}

interface GatewayMethods {
	holderOfKey(ctx: Context<unknown, GatewayMeta>, task: QueuedTask): Promise<QueuedTask>;
}

interface GatewayVars {
	queue: TaskQueue;
	/** Null when metrics are off. */
	metrics: TaskMetrics | null;
	/** moleculer-web's HTTP server and route API. */
	server: Server;
	addRoute(route: object): void;
	sendError(req: IncomingMessage, res: ServerResponse, err: Error): void;
}

type GatewaySchema = Partial<
	ServiceSchema<ApiSettingsSchema & Partial<TaskGatewaySettings>, GatewayMethods, GatewayVars, Service<GatewaySettings> & GatewayMethods & GatewayVars>
>;

const RETRY_AFTER_SECONDS = "1";

function serviceUnavailable(ctx: Context<unknown, GatewayMeta>, reason: string): Errors.MoleculerError {
	ctx.meta.$responseHeaders = { "Retry-After": RETRY_AFTER_SECONDS };
	return new Errors.MoleculerError(reason, 503, "SERVICE_UNAVAILABLE");
}

/**
 * The task HTTP API (SPEC "HTTP API"), one implementation for both gateways: a service that
 * mixes this in sets `settings.port` and `settings.source`.
 */
const TaskGatewayMixin: GatewaySchema = {
	mixins: [ApiGateway],
	dependencies: ["tasks"],
	settings: {
		ip: config.bindAddress,
		maxBodyBytes: config.maxBodyBytes,
		requestLogging: config.logLevel === "debug" || config.logLevel === "trace",
		// One insert by `_id` answers far within it; a store that cannot is in trouble, and the
		// POST does not wait for it (the task id still makes the store keep the task once).
		keyClaimTimeoutMs: 1000,
		keepAliveTimeoutMs: 65_000,
		routes: [],
		// Single requests are logged at debug, when requestLogging is on.
		logRequest: "debug",
		logResponse: "debug",
		logRequestParams: null,
	},
	actions: {
		enqueue: {
			params: { $$strict: true, title: titleRule },
			async handler(ctx: Context<{ title: string }, GatewayMeta>): Promise<AcceptedTask> {
				const key = ctx.meta.idempotencyKey;
				// The same key always names the same task, so even a retry that reaches another
				// gateway is stored once.
				const fresh = newTask(ctx.params.title, this.settings.source, key ? taskIdOfKey(key) : undefined);
				// A retry publishes its key's first task again: the first attempt may have died
				// before RabbitMQ confirmed it, and the store keeps a task id once.
				const task = key ? await this.holderOfKey(ctx, fresh) : fresh;
				const publishedAt = this.metrics ? performance.now() : 0;
				try {
					await this.queue.publish(task);
				} catch (err) {
					if (err instanceof QueueUnavailableError) throw serviceUnavailable(ctx, err.message);
					throw err;
				}
				// A retry's task was counted when it was first accepted.
				if (task === fresh) this.metrics?.taskAccepted(this.settings.source, (performance.now() - publishedAt) / 1000);
				return accepted(ctx, { ...task, status: "queued" });
			},
		},
		listTasks: {
			params: {
				$$strict: "remove",
				...pageRules,
			},
			handler(ctx: Context<{ page?: number; pageSize?: number; after?: string }, GatewayMeta>) {
				return ctx.call("tasks.list", ctx.params).catch(err => retryLater(ctx, err));
			},
		},
		getTask: {
			params: { id: { type: "string", min: 1, max: 100 } },
			handler(ctx: Context<{ id: string }, GatewayMeta>) {
				return ctx.call("tasks.get", { id: ctx.params.id }).catch(err => retryLater(ctx, err));
			},
		},
		live() {
			return { status: "ok" };
		},
		ready(ctx: Context<unknown, GatewayMeta>) {
			if (!this.queue.isConnected()) throw serviceUnavailable(ctx, "The task queue is not connected");
			const services = this.broker.registry.getServiceList({ onlyAvailable: true, skipInternal: true });
			if (!services.some(service => service.name === "tasks")) throw serviceUnavailable(ctx, "No tasks store is available");
			return { status: "ready" };
		},
	},
	methods: {
		/**
		 * The task that holds the key `task.id` names, as the store's claims say: `task` itself for
		 * a new key, else the key's first task, from whichever gateway. Throws
		 * IdempotencyKeyReusedError when that task has another title. When the store cannot say
		 * within keyClaimTimeoutMs, `task`: a claim never costs an accepted task.
		 */
		async holderOfKey(ctx: Context<unknown, GatewayMeta>, task: QueuedTask): Promise<QueuedTask> {
			let claim: KeyClaim;
			try {
				claim = await ctx.call<KeyClaim, { task: QueuedTask }>("tasks.claimKey", { task }, { timeout: this.settings.keyClaimTimeoutMs });
			} catch (err) {
				this.logger.debug(`Idempotency-Key of task ${task.id} not claimed, accepted: ${(err as Error).message}`);
				return task;
			}
			return claim.first ? task : taskOfRetry(claim.holder, task.title);
		},
		/**
		 * moleculer-web's error handler, which logs a server error whole: here with its request id,
		 * the one detail of it the client's answer keeps (lib/http/public-errors.ts).
		 */
		errorHandler(req: IncomingMessage, res: ServerResponse, err: Error) {
			if (statusOf(err as { code?: unknown }) >= 500) this.logger.error(`Request ${requestIdOf(req)} failed:`, err);
			this.sendError(req, res, err);
		},
		/**
		 * moleculer-web answers every error here, whichever layer raised it (body reader, guards,
		 * validation, the action): the one place that sees each refusal with its status.
		 */
		sendError(req: IncomingMessage, res: ServerResponse, err: Error) {
			sendErrorOfMoleculerWeb.call(this, req, res, publicError(err, requestIdOf(req)));
			if (this.metrics && req.method !== "GET" && req.method !== "HEAD") {
				this.metrics.requestRefused(this.settings.source, res.statusCode);
			}
		},
		reformatError(err: Errors.MoleculerError) {
			return errorBody(err);
		},
	},
	created() {
		this.metrics = taskMetricsOf(this.broker);
		this.metrics?.gatewayCreated(this.settings.source);
		// Opens the node's queue now, so that it is connected before the first request.
		this.queue = this.broker.taskQueue;
		const own = (action: string) => `${this.name}.${action}`;
		this.addRoute({
			path: "/",
			mappingPolicy: "restrict",
			aliases: {
				"POST /tasks": own("enqueue"),
				"GET /tasks": own("listTasks"),
				"GET /tasks/:id": own("getTask"),
				"GET /health/live": own("live"),
				"GET /health/ready": own("ready"),
			},
			logging: this.settings.requestLogging,
			// No timer of Moleculer's on these local calls: a publish has its own
			// deadline (PUBLISH_TIMEOUT_MS), and the reads' calls to the store keep REQUEST_TIMEOUT_MS.
			callOptions: { timeout: 0 },
			bodyParsers: false,
			use: [jsonBodyParser(this.settings.maxBodyBytes)],
			onBeforeCall(
				ctx: Context<unknown, GatewayMeta>,
				_route: unknown,
				req: IncomingMessage & { body?: unknown; query?: Record<string, unknown> },
				_res: unknown,
				alias: { method: string },
			) {
				// moleculer-web resolves OPTIONS to the alias its Access-Control-Request-Method names
				// (a CORS preflight); with CORS off that would run the action, even queue a task.
				if (req.method !== alias.method) {
					ctx.meta.$responseHeaders = { Allow: alias.method };
					throw new MethodNotAllowedError(req.method, alias.method);
				}
				if (req.method === "POST") {
					assertJsonBody(req);
					ctx.meta.idempotencyKey = idempotencyKeyOf(req.headers["idempotency-key"]);
				}
				// Nginx tells where it mounts this gateway (/flask, /go) so Location points there.
				const prefix = req.headers["x-forwarded-prefix"];
				if (typeof prefix === "string" && /^\/[\w-]*$/.test(prefix)) ctx.meta.pathPrefix = prefix;
			},
		});
	},
	started() {
		this.server.keepAliveTimeout = this.settings.keepAliveTimeoutMs;
		this.server.headersTimeout = this.settings.keepAliveTimeoutMs + 1000;
	},
	async stopped() {
		// Stop accepting and answer what is in flight while the queue is still open.
		if (this.server.listening) await new Promise(resolve => this.server.close(resolve));
	},
};

const sendErrorOfMoleculerWeb = (ApiGateway.methods as { sendError: (this: unknown, req: IncomingMessage, res: ServerResponse, err: Error) => void }).sendError;

/** A store read that timed out (504) or was shed (503) tells the client when to come back. */
function retryLater(ctx: Context<unknown, GatewayMeta>, callError: unknown): never {
	const err = asStoreReadError(callError) as { code?: number; data?: { retryAfterSeconds?: number } };
	const seconds = err.data?.retryAfterSeconds;
	if ((err.code === 503 || err.code === 504) && typeof seconds === "number") {
		ctx.meta.$responseHeaders = { "Retry-After": String(seconds) };
	}
	throw err;
}

function accepted(ctx: Context<unknown, GatewayMeta>, task: AcceptedTask): AcceptedTask {
	ctx.meta.$statusCode = 202;
	ctx.meta.$responseHeaders = { Location: `${ctx.meta.pathPrefix ?? ""}/tasks/${task.id}` };
	return task;
}

export default asMixin(TaskGatewayMixin);
