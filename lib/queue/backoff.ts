/**
 * The delay before retry `attempt` (1, 2, ...): 100 ms, doubling each time, never above `maxMs`.
 * Reconnecting to RabbitMQ, retrying a store batch and the test clients' retries all wait so.
 */
export function backoffMs(attempt: number, maxMs: number): number {
	return Math.min(100 * 2 ** (attempt - 1), maxMs);
}
