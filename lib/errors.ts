import { Errors } from "moleculer";
import type { QueueType } from "./config";

/**
 * Every error class of the project. A Moleculer error's `code` is the HTTP status the gateways
 * answer it with and its `type` the machine-readable condition a client reads.
 *
 * | class                      | status | type                     | raised by                          |
 * | -------------------------- | ------ | ------------------------ | ---------------------------------- |
 * | InvalidUtf8Error           | 400    | entity.parse.failed      | lib/http/request-guards.ts         |
 * | InvalidIdempotencyKeyError | 400    | INVALID_IDEMPOTENCY_KEY  | lib/http/idempotency.ts            |
 * | InvalidCursorError         | 422    | VALIDATION_ERROR         | lib/store/task-reads.ts            |
 * | PageBeyondReachError       | 422    | VALIDATION_ERROR         | lib/store/task-reads.ts            |
 * | EntityNotFoundError        | 404    | ENTITY_NOT_FOUND         | services/tasks.service.ts          |
 * | MethodNotAllowedError      | 405    | METHOD_NOT_ALLOWED       | mixins/task-gateway.mixin.ts       |
 * | UnsupportedMediaTypeError  | 415    | UNSUPPORTED_MEDIA_TYPE   | lib/http/request-guards.ts         |
 * | IdempotencyKeyReusedError  | 422    | IDEMPOTENCY_KEY_REUSED   | lib/http/idempotency.ts            |
 * | StoreReadsShedError        | 503    | STORE_READS_SHED         | lib/store/read-shedding.ts         |
 * | StoreReadTimeoutError      | 504    | STORE_READ_TIMEOUT       | lib/store/read-shedding.ts         |
 * | PublicServerError          | 5xx    | the hidden error's type  | lib/http/public-errors.ts          |
 * | QueueUnavailableError      | (503)  | (SERVICE_UNAVAILABLE)    | lib/queue/amqp-task-queue.ts       |
 * | QueueMismatchError         | none   | none                     | lib/queue/amqp-task-queue.ts       |
 *
 * QueueUnavailableError and QueueMismatchError are plain errors, inside the queue: the gateway
 * answers the first with a 503 SERVICE_UNAVAILABLE and Retry-After; the second stops the node.
 * Moleculer's own errors are used as they are: ValidationError (422, parameters),
 * MoleculerClientError for body-parser's refusals and aborted requests (400), and MoleculerError
 * 503 SERVICE_UNAVAILABLE for a queue that cannot take the task.
 */

/* 4xx: the client's to fix; message and data reach the client. */

/**
 * body-parser decodes invalid UTF-8 into U+FFFD replacement characters, which would queue
 * another title than the one sent; JSON text must be UTF-8, so such a body is invalid JSON.
 */
export class InvalidUtf8Error extends Errors.MoleculerClientError {
	constructor() {
		super("The request body is not valid UTF-8.", 400, "entity.parse.failed");
	}
}

export class InvalidIdempotencyKeyError extends Errors.MoleculerClientError {
	constructor() {
		super("The Idempotency-Key header must be 1 to 200 visible ASCII characters (no spaces).", 400, "INVALID_IDEMPOTENCY_KEY");
	}
}

export class InvalidCursorError extends Errors.ValidationError {
	constructor() {
		super("The cursor is not one this API handed out", "VALIDATION_ERROR", [
			{ type: "cursor", field: "after", message: "The 'after' field must be the 'next' value of an earlier page." },
		]);
	}
}

/** `reach`: how many of the newest tasks pages by number reach. */
export class PageBeyondReachError extends Errors.ValidationError {
	constructor(reach: number) {
		super("The page is beyond what pages by number reach", "VALIDATION_ERROR", [
			{
				type: "pageReach",
				field: "page",
				message: `Pages by number reach the newest ${reach} tasks (page × pageSize); for older ones follow each page's 'next' with ?after=<next>.`,
			},
		]);
	}
}

/** 404, named as moleculer-db names it. */
export class EntityNotFoundError extends Errors.MoleculerClientError {
	constructor(id: string) {
		super("Entity not found", 404, "ENTITY_NOT_FOUND", { id });
	}
}

export class MethodNotAllowedError extends Errors.MoleculerClientError {
	constructor(method: string | undefined, allowed: string) {
		super(`${method} is not allowed here; use ${allowed}`, 405, "METHOD_NOT_ALLOWED");
	}
}

export class UnsupportedMediaTypeError extends Errors.MoleculerClientError {
	constructor(contentType: string | undefined) {
		super(`Content-Type must be application/json, got ${contentType ?? "none"}`, 415, "UNSUPPORTED_MEDIA_TYPE");
	}
}

export class IdempotencyKeyReusedError extends Errors.MoleculerClientError {
	constructor() {
		super("This Idempotency-Key was sent before with another body; use a new key for another task.", 422, "IDEMPOTENCY_KEY_REUSED");
	}
}

/* 5xx: the server's; the client sees only their public form (PublicServerError). */

/** A read refused without asking the store: too many wait already, or its last ones ran out of time. 503. */
export class StoreReadsShedError extends Errors.MoleculerRetryableError {
	constructor(retryAfterSeconds: number) {
		super("The tasks store is too slow for this read now; retry later", 503, "STORE_READS_SHED", { retryAfterSeconds });
	}
}

/** A read the store gave up on (or never started, its caller's time being up): 504. */
export class StoreReadTimeoutError extends Errors.MoleculerRetryableError {
	constructor(budgetMs: number, retryAfterSeconds: number) {
		super(`The tasks store did not answer within ${budgetMs} ms and stopped the read`, 504, "STORE_READ_TIMEOUT", {
			maxTimeMS: budgetMs,
			retryAfterSeconds,
		});
	}
}

const SERVER_MESSAGES: Record<number, string> = {
	500: "The server could not handle the request.",
	502: "A service behind the gateway answered wrongly; retry shortly.",
	503: "The service is not available right now; retry shortly.",
	504: "The service did not answer in time; retry shortly.",
};

/**
 * What a client sees of a server error (5xx): its name, type and status, a message for its
 * status, and the request id to quote to an operator. docs/decisions/0034-what-a-server-error-tells.md
 * says why never the error's own message or data.
 */
export class PublicServerError extends Errors.MoleculerError {
	constructor(
		err: Error,
		code: number,
		readonly requestId: string | undefined,
	) {
		const known = err instanceof Errors.MoleculerError;
		super(SERVER_MESSAGES[code] ?? SERVER_MESSAGES[500], code, known && err.type ? err.type : "INTERNAL_ERROR");
		// A Moleculer error's class names a public condition (RequestTimeoutError); any other error is
		// a library's, whose name says too much about the inside.
		this.name = known ? err.name : "InternalServerError";
	}
}

/* Inside the task queue. */

/** The queue cannot take the task now; the gateway answers 503 with Retry-After. */
export class QueueUnavailableError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "QueueUnavailableError";
	}
}

/** The queue exists with other arguments (another type, most often): no node can use it as configured. */
export class QueueMismatchError extends Error {
	constructor(queue: string, type: QueueType, brokerMessage: string) {
		super(
			`RabbitMQ already has a queue "${queue}" declared differently from RABBIT_QUEUE_TYPE=${type} ` +
				`(${brokerMessage}). A queue cannot change its type or arguments in place: set RABBIT_QUEUE_TYPE ` +
				`to the queue's type, or move it over as docs/rabbitmq-cluster.md's "Moving task_queue from classic to quorum" says.`,
		);
		this.name = "QueueMismatchError";
	}
}
