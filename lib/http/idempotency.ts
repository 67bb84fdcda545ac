import { IdempotencyKeyReusedError, InvalidIdempotencyKeyError } from "../errors";
import { nameBasedUuid, type AcceptedTask, type ProcessedTask, type QueuedTask } from "../task";

/**
 * The `Idempotency-Key` rules of POST /tasks, after the IETF draft "The Idempotency-Key HTTP
 * Header Field": a key names one request; sent again with the same body it gets the first
 * answer, with another body it is refused, on whichever gateway it lands (docs/security.md).
 */

/** Visible ASCII only, as a header value can carry safely and a log line shows as sent. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/** The rule of a key, for a key that arrives on the bus rather than in a header. */
export const idempotencyKeyRule = { type: "string", pattern: IDEMPOTENCY_KEY } as const;

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
 * The answer to a key's first POST: the task as accepted (queued), or, rebuilt from the store
 * once processed, the same task with the status the API gives it.
 */
export type FirstAnswer = AcceptedTask | (QueuedTask & Pick<ProcessedTask, "status">);

/** The task a key's first POST stored, as `tasks.get` answers it (dates as Date locally, as strings from another node). */
export type StoredTask = Pick<ProcessedTask, "id" | "title" | "source" | "status"> & { created_at: string | Date };

/** The first answer rebuilt from the stored task; refuses the key when the task has another title (the whole body). */
export function answerFromStore(stored: StoredTask, title: string): FirstAnswer {
	if (stored.title !== title) throw new IdempotencyKeyReusedError();
	return { id: stored.id, title: stored.title, source: stored.source, created_at: new Date(stored.created_at).toISOString(), status: stored.status };
}

/**
 * The first answers of the keys a gateway knows of (its own and the other gateways'), the
 * oldest forgotten beyond `capacity`: a forgotten key is looked up in the store, and still maps
 * to the same task id, so the store keeps the task once.
 */
export class AcceptedByKey {
	/** null: a key told of with two titles, which only the store can answer. */
	private readonly answers = new Map<string, FirstAnswer | null>();

	constructor(private readonly capacity: number) {}

	/** The first answer to `key`, or undefined; refuses the key with another title (the whole body). */
	replay(key: string, title: string): FirstAnswer | undefined {
		const first = this.answers.get(key);
		if (first && first.title !== title) throw new IdempotencyKeyReusedError();
		return first ?? undefined;
	}

	/**
	 * Keeps the first answer to `key`. A key that two gateways accepted at once with different
	 * bodies is left to the store, which keeps only one of the two tasks: whichever message about
	 * the key comes later, the next request with it asks the store which.
	 */
	remember(key: string, answer: FirstAnswer): void {
		const known = this.answers.get(key);
		if (known === undefined) {
			if (this.answers.size >= this.capacity) this.answers.delete(this.answers.keys().next().value as string);
			this.answers.set(key, answer);
		} else if (known !== null && known.title !== answer.title) {
			this.answers.set(key, null);
		}
	}
}
