import { isUtf8 } from "node:buffer";
import { createHash, randomUUID } from "node:crypto";
import Validator from "fastest-validator";

/** A task as it travels on the queue (SPEC "Messages on the queue"); dates are ISO 8601 strings. */
export interface QueuedTask {
	id: string;
	title: string;
	source: string;
	created_at: string;
}

/** A task as `POST /tasks` answers it: queued, not yet processed. */
export type AcceptedTask = QueuedTask & { status: "queued" };

/** A processed task: what a worker hands to the store, and what the API and the REPL show. */
export interface ProcessedTask extends QueuedTask {
	status: "processed";
	processed_by: string;
	processed_at: string;
	node_id: string;
}

/** Every field of a processed task, in the order the API shows them. */
export const TASK_FIELDS = ["id", "title", "source", "created_at", "status", "processed_by", "processed_at", "node_id"] as const;
export type TaskField = (typeof TASK_FIELDS)[number];
/** The fields that hold a date: a BSON date in the store, an ISO 8601 string everywhere else. */
export const DATE_FIELDS = ["created_at", "processed_at"] as const satisfies readonly TaskField[];
type DateField = (typeof DATE_FIELDS)[number];
/** The fields a list may be filtered on by equality (dates are ordered, not matched). */
export const MATCHABLE_FIELDS = TASK_FIELDS.filter((field): field is Exclude<TaskField, DateField> => !(DATE_FIELDS as readonly string[]).includes(field));

/** The stored document (SPEC "Stored task"): the task id is the document's `_id`. */
export type TaskDocument = Omit<ProcessedTask, "id" | DateField> & { _id: string } & Record<DateField, Date>;

/** The one conversion between a processed task and its document. */
export function toDocument(task: ProcessedTask): TaskDocument {
	return {
		_id: task.id,
		title: task.title,
		source: task.source,
		created_at: new Date(task.created_at),
		status: task.status,
		processed_by: task.processed_by,
		processed_at: new Date(task.processed_at),
		node_id: task.node_id,
	};
}

/** Who stamps a processed task: the worker role and the node it runs on. */
export interface WorkerStamp {
	processedBy: string;
	nodeID: string;
}

/** The one rule for a title, shared by the HTTP API and the queue consumer. */
export const titleRule = {
	type: "string",
	trim: true,
	min: 1,
	max: 200,
	// Control characters (newlines, NUL, escapes) have no place in a one-line title. Nor have
	// unpaired surrogates (JSON can spell them, "\ud800"): UTF-8 cannot hold them, so the store
	// would keep another title than the one accepted.
	pattern: /^[^\p{Cc}\p{Cs}]*$/u,
	messages: { stringPattern: "The 'title' field must not contain control characters or unpaired surrogates." },
} as const;

/**
 * Deeper than any task needs. Bodies and messages nested deeper are refused before validation:
 * fastest-validator renders a wrong-typed value into its message, recursively, and an array
 * nested a few thousand deep overflows the stack there.
 */
export const MAX_NESTING = 32;

/** Whether objects or arrays in `value` nest deeper than `limit`; iterative, as the value may be thousands deep. */
export function nestedDeeperThan(value: unknown, limit: number): boolean {
	const pending: [unknown, number][] = [[value, 0]];
	for (let next = pending.pop(); next; next = pending.pop()) {
		const [current, depth] = next;
		if (current === null || typeof current !== "object") continue;
		if (depth >= limit) return true;
		for (const child of Object.values(current)) pending.push([child, depth + 1]);
	}
	return false;
}

/** Source stamp for messages from producers other than the two gateways. */
export const EXTERNAL_SOURCE = "external";

const idRule = { type: "string", min: 1, max: 100 } as const;
const sourceRule = { type: "string", min: 1, max: 50 } as const;
/** What toISOString() gives for the years 0000 to 9999, the dates a BSON date and every client read back alike. */
const isoDateRule = {
	type: "string",
	pattern: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/,
	messages: { stringPattern: "The '{field}' field must be a date of the years 0000 to 9999." },
} as const;

/** The queued part of a task, as the store takes it: the one rule a message must pass to be stored. */
const queuedTaskProps = { id: idRule, title: titleRule, source: sourceRule, created_at: isoDateRule } as const;

/** A queued task as the store takes it: from a gateway's claim (`tasks.claimKey`), or decoded from a message. */
export const queuedTaskRule = { type: "object", strict: "remove", props: queuedTaskProps } as const;

/** `tasks.storeProcessed` checks each task by this: a worker on another node sends them as JSON. */
export const processedTaskRule = {
	type: "object",
	strict: "remove",
	props: {
		...queuedTaskProps,
		status: { type: "equal", value: "processed" },
		processed_by: { type: "string", min: 1, max: 50 },
		processed_at: isoDateRule,
		node_id: { type: "string", min: 1, max: 200 },
	},
} as const;

const validator = new Validator({ useNewCustomCheckerFunction: true });
/** How a producer may spell a task: a date as a string or milliseconds that Date parses, fields left out that the worker fills in. */
const messageShapeCheck = validator.compile({
	$$strict: "remove",
	id: { type: "string", optional: true },
	title: { type: "string" },
	source: { type: "string", optional: true },
	created_at: { type: "multi", rules: [{ type: "string" }, { type: "number" }], optional: true },
});
/** The store's own rule on the task the worker made of the message (processedTaskRule's queued part). */
const storableTaskCheck = validator.compile({ $$root: true, ...queuedTaskRule });

/**
 * Why a message is not a task: `unreadable` when its bytes are no JSON object, `invalid` when
 * they are one that the store would refuse (a missing title, a wrong type, an out-of-range date).
 */
export type DecodeResult = { ok: true; task: QueuedTask } | { ok: false; kind: "unreadable" | "invalid"; reason: string };

const problemsOf = (verdict: unknown) => (verdict as { message?: string }[]).map(problem => problem.message).join(" ");

/**
 * Turns a queue message body into a task that the store will take, or says why it cannot be one.
 *
 * A message without an id (a foreign or older producer sending only `{"title"}`) takes the
 * AMQP messageId, or else a UUID derived from its bytes, so that a redelivery of it still maps
 * to the same document. Invalid UTF-8 is refused rather than replaced: the store would keep
 * another title than the one sent.
 */
export function decodeTaskMessage(body: Buffer, messageId?: string): DecodeResult {
	if (!isUtf8(body)) return { ok: false, kind: "unreadable", reason: "body is not valid UTF-8" };
	let parsed: unknown;
	try {
		parsed = JSON.parse(body.toString("utf8"));
	} catch (err) {
		return { ok: false, kind: "unreadable", reason: `body is not JSON: ${(err as Error).message}` };
	}
	if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
		return { ok: false, kind: "unreadable", reason: "body is not a JSON object" };
	}
	if (nestedDeeperThan(parsed, MAX_NESTING)) {
		return { ok: false, kind: "unreadable", reason: `body is nested deeper than ${MAX_NESTING} levels` };
	}
	const candidate = parsed as Record<string, unknown>;
	const shape = messageShapeCheck(candidate);
	if (shape !== true) return { ok: false, kind: "invalid", reason: problemsOf(shape) };
	const createdAt = candidate.created_at as string | number | null | undefined;
	const date = createdAt == null ? new Date() : new Date(createdAt);
	if (Number.isNaN(date.getTime())) return { ok: false, kind: "invalid", reason: "The 'created_at' field must be a date." };
	const task = {
		id: (candidate.id as string | undefined) ?? messageId ?? nameBasedUuid(`message:${body.toString("base64")}`),
		title: candidate.title as string,
		source: (candidate.source as string | undefined) ?? EXTERNAL_SOURCE,
		created_at: date.toISOString(),
	};
	const storable = storableTaskCheck(task);
	if (storable !== true) return { ok: false, kind: "invalid", reason: problemsOf(storable) };
	return { ok: true, task };
}

/**
 * Why a message's AMQP properties say it is no plain JSON task, or undefined. A producer that
 * sets no content type (the original's, pika's default) is taken at its word that it sends JSON.
 */
export function messageFormatProblem(contentType: unknown, contentEncoding: unknown): string | undefined {
	// What the gateways and the original's producers send, without a string made.
	if (contentEncoding === undefined && (contentType === undefined || contentType === "application/json")) return undefined;
	if (contentEncoding !== undefined && contentEncoding !== "" && contentEncoding !== "identity") {
		return `content encoding ${JSON.stringify(contentEncoding)} is not supported`;
	}
	if (contentType === undefined || contentType === "") return undefined;
	const mediaType = String(contentType).split(";")[0].trim().toLowerCase();
	return mediaType === "application/json" || /^application\/[^/]*\+json$/.test(mediaType)
		? undefined
		: `content type ${JSON.stringify(contentType)} is not JSON`;
}

export function encodeTaskMessage(task: QueuedTask): Buffer {
	return Buffer.from(JSON.stringify(task));
}

export function newTask(title: string, source: string, id: string = randomUUID()): QueuedTask {
	return { id, title, source, created_at: new Date().toISOString() };
}

export function stampProcessed(task: QueuedTask, stamp: WorkerStamp, processedAt = new Date().toISOString()): ProcessedTask {
	return { ...task, status: "processed", processed_by: stamp.processedBy, processed_at: processedAt, node_id: stamp.nodeID };
}

// Fixed namespace of this project's name-based UUIDs (RFC 9562 version 5).
const UUID_NAMESPACE = Buffer.from("5b1d3c0e8f7a4e2b9c6d0a1f2e3b4c5d", "hex");

/** A version-5 UUID: the same name always gives the same id. */
export function nameBasedUuid(name: string): string {
	const hash = createHash("sha1").update(UUID_NAMESPACE).update(name).digest();
	hash[6] = (hash[6] & 0x0f) | 0x50;
	hash[8] = (hash[8] & 0x3f) | 0x80;
	const hex = hash.toString("hex", 0, 16);
	return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
