import type { IncomingMessage } from "node:http";
import { Errors } from "moleculer";

/**
 * What a client sees of a server error (5xx): its name, type and status, a message for its
 * status, and the request id to quote to an operator, who finds the whole error in the
 * gateway's log under that id. Never the error's own message or data, which may name hosts,
 * ports, nodes, actions or the store's driver. Client errors (4xx) are the client's to fix and
 * keep their message and data.
 */

const SERVER_MESSAGES: Record<number, string> = {
	500: "The server could not handle the request.",
	502: "A service behind the gateway answered wrongly; retry shortly.",
	503: "The service is not available right now; retry shortly.",
	504: "The service did not answer in time; retry shortly.",
};

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
