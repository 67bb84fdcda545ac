import type { ActionSchema, Context, Errors } from "moleculer";
import { StoreReadsShedError, StoreReadTimeoutError } from "../errors";

/**
 * How the store's reads give way when the store cannot serve them in time, with what Moleculer
 * ships, per action: a `timeout` the caller waits at most, a `bulkhead` that bounds the reads a
 * node runs and queues, and a `circuitBreaker` that stops sending reads to a store that keeps
 * running out of time and lets one probe through after a few seconds. Each read carries the
 * time its caller still waits as `maxTimeMS`, so that the store itself stops a read nobody
 * waits for any more.
 */

/**
 * What a caller of `tasks.list` or `tasks.get` waits at most. Reads served from an index answer
 * far within it; one that needs longer is a store in trouble, and keeping a user waiting longer
 * helps neither the user nor the store.
 */
export const READ_TIMEOUT_MS = 5_000;
/** How long an open circuit refuses reads before it lets one probe read through. */
const HALF_OPEN_MS = 5_000;
/** Below this, a read is not sent: its caller gives up before the store could answer. */
const SMALLEST_BUDGET_MS = 20;
/** MongoDB's (and FerretDB's) error code for a command stopped by its `maxTimeMS`. */
export const MAX_TIME_MS_EXPIRED = 50;

const seconds = (ms: number) => Math.ceil(ms / 1000);

/**
 * The options of one read action. `concurrency` reads run at once on a node and `maxQueueSize`
 * more wait; beyond that a read is refused at once, so that a flood never piles up in the
 * store. The circuit opens when at least half of the last reads (four or more, within the
 * broker's window) ran out of time; only timeouts count, not a 404 or a bad cursor.
 */
export function readShedding(limits: { concurrency: number; maxQueueSize: number }): Pick<ActionSchema, "bulkhead" | "circuitBreaker"> & { timeout: number } {
	return {
		timeout: READ_TIMEOUT_MS,
		bulkhead: { enabled: true, ...limits },
		circuitBreaker: {
			enabled: true,
			threshold: 0.5,
			minRequestCount: 4,
			halfOpenTime: HALF_OPEN_MS,
			check: (err: Error) => (err as Errors.MoleculerError).code === 504,
		},
	};
}

/**
 * The store's share of the time the caller still waits: the rest lets its error travel back
 * before the caller's own timeout fires. A read that waited in the bulkhead's queue gets less.
 */
export function readBudgetMs(ctx: Context): number {
	const timeoutMs = ctx.options.timeout ?? READ_TIMEOUT_MS;
	const [s, ns] = ctx.startHrTime ? process.hrtime(ctx.startHrTime) : [0, 0];
	return Math.floor((timeoutMs - (s * 1000 + ns / 1e6)) * 0.8);
}

/** Runs `read` with `maxTimeMS`; a read the store stopped, or that came too late to start, is a StoreReadTimeoutError. */
export async function boundedRead<T>(budgetMs: number, read: (maxTimeMS: number) => Promise<T>): Promise<T> {
	if (budgetMs < SMALLEST_BUDGET_MS) throw new StoreReadTimeoutError(Math.max(0, budgetMs), seconds(HALF_OPEN_MS));
	try {
		return await read(budgetMs);
	} catch (err) {
		if ((err as { code?: unknown }).code === MAX_TIME_MS_EXPIRED) throw new StoreReadTimeoutError(budgetMs, seconds(HALF_OPEN_MS));
		throw err;
	}
}

/**
 * The API's errors for Moleculer's refusals of a read call: a full bulkhead queue (429
 * QUEUE_FULL) and an open circuit (no endpoint left: 404 SERVICE_NOT_AVAILABLE) are reads shed
 * (503), a call that timed out before the store's answer came (504 REQUEST_TIMEOUT) is a store
 * read timeout. Matched by type, as errors from another node arrive rebuilt.
 */
export function asStoreReadError(err: unknown): unknown {
	switch ((err as { type?: unknown }).type) {
		case "QUEUE_FULL":
			return new StoreReadsShedError(1);
		case "SERVICE_NOT_AVAILABLE":
			return new StoreReadsShedError(seconds(HALF_OPEN_MS));
		case "REQUEST_TIMEOUT":
			return new StoreReadTimeoutError(READ_TIMEOUT_MS, seconds(HALF_OPEN_MS));
		default:
			return err;
	}
}
