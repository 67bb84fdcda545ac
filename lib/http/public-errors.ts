import type { IncomingMessage } from "node:http";
import type { Errors } from "moleculer";
import { PublicServerError } from "../errors";

/**
 * What a client sees of a server error (5xx): its name, type and status, a message for its
 * status, and the request id to quote to an operator, who finds the whole error in the
 * gateway's log under that id. Never the error's own message or data, which may name hosts,
 * ports, nodes, actions or the store's driver. Client errors (4xx) are the client's to fix and
 * keep their message and data.
 */

/** The status moleculer-web answers an error with. */
export function statusOf(err: { code?: unknown; status?: unknown }): number {
	const code = typeof err.code === "number" ? err.code : err.status;
	return typeof code === "number" && Number.isInteger(code) && code >= 400 && code < 600 ? code : 500;
}

/** The request id moleculer-web gave the request's context (X-Request-Id, else its own). */
export function requestIdOf(req: IncomingMessage & { $ctx?: { requestID?: string | null } }): string | undefined {
	const header = req.headers["x-request-id"];
	return req.$ctx?.requestID ?? (typeof header === "string" ? header : undefined);
}

/** The error as the client may see it: a server error replaced by its public form. */
export function publicError(err: Error, requestId: string | undefined): Error {
	const code = statusOf(err as { code?: unknown; status?: unknown });
	return code >= 500 && !(err instanceof PublicServerError) ? new PublicServerError(err, code, requestId) : err;
}

/** The JSON body of an error answer (moleculer-web's reformatError): its fields, and a server error's request id. */
export function errorBody(err: Errors.MoleculerError): Record<string, unknown> {
	const { name, message, code, type, data } = err;
	return err instanceof PublicServerError ? { name, message, code, type, requestId: err.requestId } : { name, message, code, type, data };
}
