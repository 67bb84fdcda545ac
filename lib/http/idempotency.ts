import { IdempotencyKeyReusedError, InvalidIdempotencyKeyError } from "../errors";
import { nameBasedUuid, type QueuedTask } from "../task";

/**
 * The `Idempotency-Key` rules of POST /tasks, after the IETF draft "The Idempotency-Key HTTP
 * Header Field": a key names one request; sent again with the same body it gets the first
 * answer, with another body it is refused, on whichever gateway it lands (docs/security.md).
 */

/** Visible ASCII only, as a header value can carry safely and a log line shows as sent. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/**
 * The request's key, or undefined without the header. A key that breaks the rule is refused
 * rather than ignored: ignored, a client's retry would queue its task twice.
 * Node joins a repeated header with ", ", which the rule refuses too.
 */
export function idempotencyKeyOf(header: string | string[] | undefined): string | undefined {
	if (header === undefined) return undefined;
	if (typeof header !== "string" || !IDEMPOTENCY_KEY.test(header)) throw new InvalidIdempotencyKeyError();
	return header;
}

/** The one task id a key names, on every gateway and after any restart: the store keeps the task once. */
export function taskIdOfKey(key: string): string {
	return nameBasedUuid(`idempotency-key:${key}`);
}

/**
 * The task a keyed request stands for, given the task that holds its key: that task when the
 * body is the same (the title, after trimming, is the whole body); refused for another body.
 */
export function taskOfRetry(holder: QueuedTask, title: string): QueuedTask {
	if (holder.title !== title) throw new IdempotencyKeyReusedError();
	return holder;
}
