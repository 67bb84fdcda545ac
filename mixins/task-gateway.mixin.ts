import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { config } from "../lib/config";
import { MethodNotAllowedError, QueueUnavailableError } from "../lib/errors";
import { assertJsonBody, jsonBodyParser } from "../lib/http/request-guards";
import { AcceptedByKey, idempotencyKeyOf } from "../lib/http/idempotency";
import { errorBody, publicError, requestIdOf, statusOf } from "../lib/http/public-errors";
import { nameBasedUuid, newTask, titleRule, type AcceptedTask } from "../lib/task";
import type { TaskQueue } from "../lib/queue/task-queue";
import { asStoreReadError } from "../lib/store/read-shedding";
import { pageRules } from "../lib/store/task-reads";
import { asMixin } from "./as-mixin";
import { taskMetricsOf, type TaskMetrics } from "../lib/task-metrics";

export interface TaskGatewaySettings {
	port: number;
	/** The `source` stamp of the tasks this gateway accepts: "flask" or "go". */
	source: string;
}

interface GatewayMeta {
	$statusCode?: number;
	$responseHeaders?: Record<string, string>;
	idempotencyKey?: string;
	pathPrefix?: string;
}

interface GatewayVars {
	queue: TaskQueue;
	acceptedByKey: AcceptedByKey;
	/** Null when metrics are off. */
	metrics: TaskMetrics | null;
	/** moleculer-web's HTTP server and route API. */
	server: Server;
	addRoute(route: object): void;
	sendError(req: IncomingMessage, res: ServerResponse, err: Error): void;
}

type GatewaySchema = Partial<
	ServiceSchema<
		ApiSettingsSchema & Partial<TaskGatewaySettings>,
		Record<string, never>,
		GatewayVars,
		Service<ApiSettingsSchema & TaskGatewaySettings> & GatewayVars
	>
>;

const RETRY_AFTER_SECONDS = "1";
/** Idempotency keys remembered per gateway; older ones fall back on the deterministic task id. */
const REMEMBERED_KEYS = 10_000;
/** Above Nginx's upstream keepalive_timeout, so that Nginx always closes idle connections first. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

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
		routes: [],
		// Single requests are logged at debug (the route's `logging` is off below that level).
		logRequest: "debug",
		logResponse: "debug",
		logRequestParams: null,
	},
	actions: {
		enqueue: {
			params: { $$strict: true, title: titleRule },
			async handler(ctx: Context<{ title: string }, GatewayMeta>): Promise<AcceptedTask> {
				const key = ctx.meta.idempotencyKey;
				const remembered = key ? this.acceptedByKey.replay(key, ctx.params.title) : undefined;
				if (remembered) return accepted(ctx, remembered);

				// The same key always names the same task, so even a retry that reaches another
				// gateway is stored once.
				const task = newTask(ctx.params.title, this.settings.source, key ? nameBasedUuid(`idempotency-key:${key}`) : undefined);
				const publishedAt = this.metrics ? performance.now() : 0;
				try {
					await this.queue.publish(task);
				} catch (err) {
					if (err instanceof QueueUnavailableError) throw serviceUnavailable(ctx, err.message);
					throw err;
				}
				this.metrics?.taskAccepted(this.settings.source, (performance.now() - publishedAt) / 1000);
				const acceptedTask: AcceptedTask = { ...task, status: "queued" };
				if (key) this.acceptedByKey.remember(key, acceptedTask);
				return accepted(ctx, acceptedTask);
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
		this.acceptedByKey = new AcceptedByKey(REMEMBERED_KEYS);
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
			// moleculer-web builds each request's log lines (coloured, timed) even when the logger
			// drops them, so only when they are kept.
			logging: config.logLevel === "debug" || config.logLevel === "trace",
			// No timer of Moleculer's on these local calls: a publish has its own
			// deadline (PUBLISH_TIMEOUT_MS), and the reads' calls to the store keep REQUEST_TIMEOUT_MS.
			callOptions: { timeout: 0 },
			bodyParsers: false,
			use: [jsonBodyParser(config.maxBodyBytes)],
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
		this.server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
		this.server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1000;
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
