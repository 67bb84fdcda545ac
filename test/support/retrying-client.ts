import { setTimeout as sleep } from "node:timers/promises";
import { backoffMs } from "../../lib/queue/backoff";
import { inParallel } from "./stack";

export type Gateway = "flask" | "go";

/** A task a client will post, with the Idempotency-Key it keeps across its retries. */
export interface PlannedTask {
	title: string;
	key: string;
	gateway: Gateway;
}

/** One POST and what came back: an HTTP status, or why nothing did. */
export interface Attempt {
	sentAt: number;
	doneAt: number;
	result: number | "connection error" | "timeout";
}

export interface PostedTask extends PlannedTask {
	attempts: Attempt[];
	/** The task id of the 202, once one came. */
	acceptedId?: string;
	/** Why the client stopped without a 202: an answer not to retry, or the retry budget ran out. */
	failure?: string;
}

/** What a client retries: the gateway's 503 and Nginx's answers for an unreachable gateway. */
export const RETRYABLE_STATUSES: readonly number[] = [502, 503, 504];
/** Above Nginx's proxy_read_timeout (15 s), so that Nginx answers a stuck request first. */
const ATTEMPT_TIMEOUT_MS = 20_000;

/**
 * Posts one task until it gets a 202, as a careful client would: the same Idempotency-Key on
 * every attempt, retrying 502/503/504, lost connections and timeouts with a short backoff,
 * for at most `budgetMs`. Any other answer ends it.
 */
export async function postUntilAccepted(baseUrl: string, task: PlannedTask, budgetMs: number): Promise<PostedTask> {
	const posted: PostedTask = { ...task, attempts: [] };
	const giveUpAt = Date.now() + budgetMs;
	for (let attempt = 1; ; attempt++) {
		const sentAt = Date.now();
		let result: Attempt["result"];
		let body = "";
		try {
			const response = await fetch(`${baseUrl}/${task.gateway}/tasks`, {
				method: "POST",
				headers: { "Content-Type": "application/json", "Idempotency-Key": task.key },
				body: JSON.stringify({ title: task.title }),
				signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
			});
			body = await response.text();
			result = response.status;
		} catch (err) {
			result = (err as Error).name === "TimeoutError" ? "timeout" : "connection error";
		}
		posted.attempts.push({ sentAt, doneAt: Date.now(), result });

		if (result === 202) {
			posted.acceptedId = (JSON.parse(body) as { id: string }).id;
			return posted;
		}
		if (typeof result === "number" && !RETRYABLE_STATUSES.includes(result)) {
			posted.failure = `HTTP ${result}: ${body.slice(0, 300)}`;
			return posted;
		}
		if (Date.now() >= giveUpAt) {
			posted.failure = `no 202 within ${budgetMs} ms; last answer: ${result}`;
			return posted;
		}
		await sleep(backoffMs(attempt, 1000));
	}
}

/**
 * Posts every task from `clients` concurrent clients, task i not before `i * spacingMs` from the
 * start, so that the load spreads over the phase instead of finishing before a fault lands.
 */
export function postPaced(
	baseUrl: string,
	tasks: PlannedTask[],
	{ clients, spacingMs, budgetMs }: { clients: number; spacingMs: number; budgetMs: number },
): Promise<PostedTask[]> {
	const startedAt = Date.now();
	return inParallel(tasks, clients, async (task, index) => {
		const wait = startedAt + index * spacingMs - Date.now();
		if (wait > 0) await sleep(wait);
		return postUntilAccepted(baseUrl, task, budgetMs);
	});
}

/** From a task's first failed attempt to its 202: how long that client was without service (Infinity without a 202). */
export function outageMs(task: PostedTask): number {
	const failed = task.attempts.find(attempt => attempt.result !== 202);
	const accepted = task.attempts.find(attempt => attempt.result === 202);
	if (!failed) return 0;
	return (accepted?.doneAt ?? Infinity) - failed.sentAt;
}
