import { isUtf8 } from "node:buffer";
import { Readable } from "node:stream";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors } from "moleculer";
import ApiGateway from "moleculer-web";
import { InvalidUtf8Error, UnsupportedMediaTypeError } from "../errors";
import { MAX_NESTING, nestedDeeperThan } from "../task";

/**
 * What the gateways check of a request before an action sees it, beyond the actions' own
 * parameter validation: the body's bytes and media type, and input shapes that moleculer-web
 * would otherwise merge into the parameters in surprising ways.
 */

const FORBIDDEN_KEYS = ["__proto__", "constructor", "prototype"];

/**
 * body-parser decodes invalid UTF-8 into U+FFFD replacement characters, which would queue
 * another title than the one sent; JSON text must be UTF-8, so such a body is invalid JSON.
 */
function rejectInvalidUtf8(_req: IncomingMessage, _res: unknown, body: Buffer, encoding: string): void {
	if (encoding === "utf-8" && !isUtf8(body)) throw new InvalidUtf8Error();
}

type BodyParserError = Error & { status?: number; type?: string };

/**
 * moleculer-web's JSON body parser, its errors handed on as client errors. body-parser puts the
 * HTTP status of an error in `status`, but a body that fails to decompress also keeps zlib's
 * string `code` (Z_DATA_ERROR), which moleculer-web prefers and, as it is not a number, answers with a 500.
 */
export function jsonBodyParser(limit: number) {
	const parse = ApiGateway.bodyParser.json({ limit, verify: rejectInvalidUtf8 });
	const bodyParser = (req: IncomingMessage, res: ServerResponse, next: (err?: Error) => void) =>
		parse(req, res, (err?: BodyParserError) => {
			if (err && !(err instanceof Errors.MoleculerError) && typeof err.status === "number" && err.status < 500) {
				next(new Errors.MoleculerClientError(err.message, err.status, err.type ?? "BAD_REQUEST"));
			} else {
				next(err);
			}
		});
	return (req: BodyRequest, res: ServerResponse, next: (err?: Error) => void) => {
		if (!isPlainJson(req, limit)) return bodyParser(req, res, next);
		readBody(req).then(body => {
			const parsed = parsedObject(body);
			if (parsed !== undefined) {
				req.body = parsed;
				req._body = true;
				return next();
			}
			// Not a JSON object or array in UTF-8: body-parser, fed the same bytes, answers as for any body.
			const replay = Object.assign(Readable.from([body]), { headers: req.headers }) as unknown as BodyRequest;
			bodyParser(replay, res, err => {
				req.body = replay.body;
				next(err);
			});
		}, next);
	};
}

type BodyRequest = IncomingMessage & { body?: unknown; _body?: boolean };

const PLAIN_JSON_TYPE = /^application\/json\s*(?:;\s*charset="?utf-8"?\s*)?$/i;

/**
 * The body of nearly every request: JSON in UTF-8, not compressed, its length given and within
 * the limit, read without body-parser's general path (streams, charsets, decompression), a
 * gateway's largest cost of its own after moleculer-web itself; every other body goes through
 * body-parser, and so do the errors of this one.
 */
function isPlainJson(req: IncomingMessage, limit: number): boolean {
	const { headers } = req;
	const length = Number(headers["content-length"]);
	return (
		length > 0 &&
		length <= limit &&
		headers["transfer-encoding"] === undefined &&
		headers["content-encoding"] === undefined &&
		PLAIN_JSON_TYPE.test(headers["content-type"] ?? "")
	);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
	return new Promise((resolve, reject) => {
		const chunks: Buffer[] = [];
		req.on("data", (chunk: Buffer) => chunks.push(chunk));
		req.once("end", () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
		req.once("close", () => {
			if (!req.complete) reject(new Errors.MoleculerClientError("request aborted", 400, "request.aborted"));
		});
	});
}

/** The body as a JSON object or array (body-parser's strict mode), or undefined. */
function parsedObject(body: Buffer): unknown {
	if (!isUtf8(body)) return undefined;
	const text = body.toString("utf8");
	const first = /^[ \t\n\r]*(.)/s.exec(text)?.[1];
	if (first !== "{" && first !== "[") return undefined;
	try {
		return JSON.parse(text);
	} catch {
		return undefined;
	}
}

/**
 * Refuses, before the action's validation, what must not reach it: keys that JSON.parse lets
 * through but Object.assign would turn into a prototype change, fields nested too deeply for
 * the validator (see MAX_NESTING), and query parameters, which moleculer-web would merge over
 * the body's fields (`POST /tasks?title=...` would replace the body's title).
 */
function assertAcceptableInput(body: unknown, query: Record<string, unknown> | undefined): void {
	const problems: { type: string; field: string; message: string }[] = [];
	if (body !== null && typeof body === "object") {
		for (const field of FORBIDDEN_KEYS.filter(key => Object.prototype.hasOwnProperty.call(body, key))) {
			problems.push({ type: "forbidden", field, message: `The '${field}' field is not allowed.` });
		}
		for (const [field, value] of Object.entries(body)) {
			if (nestedDeeperThan(value, MAX_NESTING)) {
				problems.push({ type: "nesting", field, message: `The '${field}' field is nested deeper than ${MAX_NESTING} levels.` });
			}
		}
	}
	for (const field of Object.keys(query ?? {})) {
		problems.push({ type: "query", field, message: `The '${field}' query parameter is not allowed; send fields in the JSON body.` });
	}
	if (problems.length > 0) throw new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", problems);
}

function isJson(contentType: string | undefined): boolean {
	return contentType !== undefined && /^application\/json\s*(;|$)/i.test(contentType);
}

/** A POST's body: JSON by media type, and nothing the action's validation must not meet. */
export function assertJsonBody(req: IncomingMessage & { body?: unknown; query?: Record<string, unknown> }): void {
	if (!isJson(req.headers["content-type"])) throw new UnsupportedMediaTypeError(req.headers["content-type"]);
	assertAcceptableInput(req.body, req.query);
}
