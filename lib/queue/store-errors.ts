/**
 * How a failed store write is read: an outage of the store, which holds the batch until the store
 * is back, or something about the documents, which splits the batch to find the one the store
 * refuses. docs/decisions/0011-store-outage-or-bad-document.md says why the line is drawn here.
 */

/** MongoDB server codes of a store that cannot take writes now: not primary, shutting down, out of time. */
const OUTAGE_CODES = new Set([
	6, // HostUnreachable
	7, // HostNotFound
	50, // MaxTimeMSExpired
	64, // WriteConcernFailed
	89, // NetworkTimeout
	91, // ShutdownInProgress
	189, // PrimarySteppedDown
	262, // ExceededTimeLimit
	9001, // SocketException
	10107, // NotWritablePrimary
	11600, // InterruptedAtShutdown
	11602, // InterruptedDueToReplStateChange
	13435, // NotPrimaryNoSecondaryOk
	13436, // NotPrimaryOrSecondary
]);

/** The drivers' errors for a store that cannot be reached or answered too late. */
const OUTAGE_NAMES = /^(Mongo(Network|NetworkTimeout|ServerSelection|Timeout|TopologyClosed|NotConnected|ServerClosed|PoolCleared)Error|PoolClosedError)$/;
const OUTAGE_MESSAGES =
	/not (writable )?primary|not master|topology (is|was) (closed|destroyed)|connection .*(closed|reset|refused)|ECONNREFUSED|ECONNRESET|EPIPE|timed out/i;

interface StoreError {
	name?: string;
	code?: unknown;
	message?: string;
	/** Moleculer's mark of an error worth retrying: a request timeout, a service not available. */
	retryable?: boolean;
	writeConcernError?: unknown;
	errorLabels?: string[];
}

/** The store cannot take writes now (connection lost, timeouts, not primary): hold the batch and retry. */
export function isStoreOutage(err: unknown): boolean {
	const error = (err ?? {}) as StoreError;
	return (
		error.retryable === true ||
		Boolean(error.writeConcernError) ||
		(typeof error.code === "number" && OUTAGE_CODES.has(error.code)) ||
		(error.errorLabels?.includes("RetryableWriteError") ?? false) ||
		OUTAGE_NAMES.test(error.name ?? "") ||
		OUTAGE_MESSAGES.test(error.message ?? "")
	);
}

/**
 * The store refused a document for what it holds (the tasks service's parameter validation,
 * which is the decoder's rule: a task that got past the decoder only if the rule changed between
 * nodes). Other errors count against a document only when the store took others of its batch.
 */
export function isDocumentError(err: unknown): boolean {
	const error = (err ?? {}) as StoreError & { type?: string };
	return error.name === "ValidationError" || error.type === "VALIDATION_ERROR";
}
