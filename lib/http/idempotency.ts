import { IdempotencyKeyReusedError, InvalidIdempotencyKeyError } from "../errors";
import type { AcceptedTask } from "../task";

/**
 * The `Idempotency-Key` rules of POST /tasks, after the IETF draft "The Idempotency-Key HTTP
 * Header Field": a key names one request; sent again with the same body it gets the first
 * answer, with another body it is refused.
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

/**
 * The tasks a gateway accepted by key, the oldest forgotten beyond `capacity` (a forgotten key
 * still maps to the same task id, so the store keeps the task once).
 */
export class AcceptedByKey {
	private readonly tasks = new Map<string, AcceptedTask>();

	constructor(private readonly capacity: number) {}

	/** The task first accepted with `key`, or undefined; refuses the key with another title (the whole body). */
	replay(key: string, title: string): AcceptedTask | undefined {
		const first = this.tasks.get(key);
		if (first && first.title !== title) throw new IdempotencyKeyReusedError();
		return first;
	}

	remember(key: string, task: AcceptedTask): void {
		if (this.tasks.size >= this.capacity) this.tasks.delete(this.tasks.keys().next().value as string);
		this.tasks.set(key, task);
	}
}
