import { randomUUID } from "node:crypto";
import { gzipSync } from "node:zlib";
import { MongoClient } from "mongodb";
import { loadConfig } from "../../lib/config";
import { eventually } from "../support/eventually";
import { postTask, titled } from "../support/http";
import { deadLetteredCount } from "../support/rabbitmq";
import { gatewaysReady, inParallel, leaveStackHealthy, removeTestTasks, type Stack } from "../support/stack";
import { stackCommand } from "../../scripts/stack-control";

/**
 * Bad input through Nginx to both gateways: every request gets a 4xx with a JSON error, no
 * gateway falls over, and nothing is queued or stored. Titles carry MARK where they can, and
 * the store is checked for any document processed while the suite ran.
 */

const MARK = `malformed-${Date.now().toString(36)}`;
const GATEWAYS = ["flask", "go"] as const;
type Gateway = (typeof GATEWAYS)[number];
const JSON_TYPE = { "Content-Type": "application/json" };
const CONCURRENCY = 8;

interface BadRequest {
	what: string;
	method: string;
	url: string;
	headers: Record<string, string>;
	body?: string | Uint8Array | URLSearchParams | FormData | ReadableStream<Uint8Array>;
	/** The status(es) the request must get; whatever it is, it must be a 4xx with a JSON error. */
	expected: number | number[];
}

/** Where one gateway is reached: through Nginx, and directly (only to show that both body limits agree). */
interface Target {
	gateway: Gateway;
	viaNginx: string;
	direct: string;
}

type Category = (target: Target, maxBodyBytes: number) => BadRequest[];

const post = (
	target: Target,
	what: string,
	body: BadRequest["body"],
	expected: BadRequest["expected"],
	headers: Record<string, string> = JSON_TYPE,
): BadRequest => ({
	what,
	method: "POST",
	url: `${target.viaNginx}/tasks`,
	headers,
	body,
	expected,
});

const postJson = (target: Target, value: unknown, expected: number, what = JSON.stringify(value).slice(0, 80)) =>
	post(target, what, JSON.stringify(value), expected);

const request = (target: Target, method: string, path: string, expected: BadRequest["expected"], headers: Record<string, string> = {}): BadRequest => ({
	what: `${method} ${path.slice(0, 80)}`,
	method,
	url: `${target.viaNginx}${path}`,
	headers,
	expected,
});

/** A deterministic byte generator (mulberry32), so that a failing "random" body can be replayed. */
function seededBytes(seed: number): (length: number) => Uint8Array {
	let state = seed;
	const next = () => {
		state = (state + 0x6d2b79f5) | 0;
		let t = Math.imul(state ^ (state >>> 15), 1 | state);
		t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
	return length => Uint8Array.from({ length }, () => Math.floor(next() * 256));
}

/** A valid task body of exactly `size` bytes, padded with a field the API does not know. */
function paddedBody(size: number): string {
	const bare = JSON.stringify({ title: `${MARK} padded`, padding: "" });
	return JSON.stringify({ title: `${MARK} padded`, padding: "x".repeat(size - Buffer.byteLength(bare)) });
}

/** The body sent in chunks, without a Content-Length. */
function chunked(text: string): ReadableStream<Uint8Array> {
	return new ReadableStream({
		start(controller) {
			const bytes = Buffer.from(text);
			for (let offset = 0; offset < bytes.length; offset += 4096) controller.enqueue(bytes.subarray(offset, offset + 4096));
			controller.close();
		},
	});
}

const nested = (depth: number, open = "[", close = "]", inner = "") => `${open.repeat(depth)}${inner}${close.repeat(depth)}`;

/** A title string with raw bytes in the middle, sent as application/json. */
const withRawBytes = (target: Target, what: string, bytes: number[]) =>
	post(target, what, Buffer.concat([Buffer.from(`{"title": "${MARK} `), Buffer.from(bytes), Buffer.from('"}')]), 400);

const CATEGORIES: Record<string, Category> = {
	"broken JSON gets 400": target =>
		[
			'{"title": ',
			`{"title": "${MARK}"`,
			`{"title" "${MARK}"}`,
			`{title: "${MARK}"}`,
			`{'title': '${MARK}'}`,
			`{"title": "${MARK}",}`,
			`{"title": "${MARK}"}}`,
			`{"title": "${MARK}"} trailing`,
			`{"title": "${MARK}" "again"}`,
			'{"title": undefined}',
			'{"title": NaN}',
			'{"title": Infinity}',
			`{"title": "${MARK} \\x41"}`,
			`{"title": "${MARK} raw\nnewline"}`,
			'{"title": 0x10}',
			'{"title": 01}',
			`// comment\n{"title": "${MARK}"}`,
			`"${MARK}"`,
			"42",
			"null",
			"true",
		].map(body => post(target, body.slice(0, 80), body, 400)),

	"truncated JSON gets 400": target => {
		const whole = JSON.stringify({ title: `${MARK} truncated`, tags: [1, { deep: null }] });
		return Array.from({ length: whole.length - 1 }, (_, cut) => post(target, `first ${cut + 1} bytes`, whole.slice(0, cut + 1), 400));
	},

	"random bytes as JSON get 400": target => {
		const bytes = seededBytes(target.gateway === "flask" ? 1 : 2);
		return Array.from({ length: 50 }, (_, i) => post(target, `random bytes #${i}`, bytes(1 + ((i * 37) % 400)), 400));
	},

	"wrong content types get 415, undecodable bodies 400": target => {
		const body = JSON.stringify({ title: `${MARK} wrong type` });
		const form = new FormData();
		form.set("title", `${MARK} multipart`);
		return [
			post(target, "text/plain", body, 415, { "Content-Type": "text/plain" }),
			post(target, "text/plain; charset=utf-8", body, 415, { "Content-Type": "text/plain; charset=utf-8" }),
			post(target, "a form", new URLSearchParams({ title: `${MARK} form` }), 415, {}),
			post(target, "multipart", form, 415, {}),
			post(target, "no content type", Buffer.from(body), 415, {}),
			post(target, "application/xml", `<title>${MARK}</title>`, 415, { "Content-Type": "application/xml" }),
			post(target, "application/vnd.api+json", body, 415, { "Content-Type": "application/vnd.api+json" }),
			post(target, "application/json-patch+json", body, 415, { "Content-Type": "application/json-patch+json" }),
			post(target, "an empty Content-Type", body, 415, { "Content-Type": "" }),
			post(target, "charset=latin1", body, 415, { "Content-Type": "application/json; charset=latin1" }),
			post(target, "Content-Encoding: compress", body, 415, { ...JSON_TYPE, "Content-Encoding": "compress" }),
			post(target, "Content-Encoding: gzip, not gzipped", body, 400, { ...JSON_TYPE, "Content-Encoding": "gzip" }),
			post(target, "Content-Encoding: br, not brotli", body, 400, { ...JSON_TYPE, "Content-Encoding": "br" }),
			post(target, "Content-Encoding: deflate, not deflated", body, 400, { ...JSON_TYPE, "Content-Encoding": "deflate" }),
		];
	},

	"bodies over the limit get 413, just under it 422": (target, limit) => [
		post(target, `${limit + 1} bytes`, paddedBody(limit + 1), 413),
		post(target, `${2 * limit} bytes`, paddedBody(2 * limit), 413),
		post(target, "1 MiB", paddedBody(1 << 20), 413),
		post(target, `${limit + 1} bytes, chunked`, chunked(paddedBody(limit + 1)), 413),
		post(target, `gzip that inflates to ${4 * limit} bytes`, gzipSync(paddedBody(4 * limit)), 413, { ...JSON_TYPE, "Content-Encoding": "gzip" }),
		post(target, `${limit} bytes (the limit)`, paddedBody(limit), 422),
		post(target, `${limit - 1} bytes`, paddedBody(limit - 1), 422),
		post(target, `a ${limit - 100}-character title`, JSON.stringify({ title: `${MARK} ${"x".repeat(limit - 120)}` }), 422),
		// The gateway itself, without Nginx in front: the same limit.
		{ ...post(target, `${limit + 1} bytes, straight to the gateway`, paddedBody(limit + 1), 413), url: `${target.direct}/tasks` },
		{ ...post(target, `${limit} bytes, straight to the gateway`, paddedBody(limit), 422), url: `${target.direct}/tasks` },
	],

	"titles of the wrong type get 422": target =>
		[42, 0, -1.5, [], [`${MARK}`], {}, { text: `${MARK}` }, null, true, false].map(title => postJson(target, { title }, 422)),

	"missing and unknown fields get 422": target => [
		postJson(target, {}, 422),
		postJson(target, { name: `${MARK}` }, 422),
		postJson(target, { Title: `${MARK}` }, 422),
		postJson(target, { "title ": `${MARK}` }, 422),
		postJson(target, { title: `${MARK} ok`, priority: 1 }, 422),
		postJson(target, { title: `${MARK} ok`, id: randomUUID() }, 422),
		postJson(target, { title: `${MARK} ok`, source: "go" }, 422),
		postJson(target, { title: `${MARK} ok`, status: "processed" }, 422),
		postJson(target, { title: `${MARK} ok`, created_at: new Date().toISOString() }, 422),
		postJson(target, { title: `${MARK} ok`, processed_by: "worker-py" }, 422),
		{ ...postJson(target, {}, 422, "title in the query string only"), url: `${target.viaNginx}/tasks?title=${MARK}-query` },
		{ ...postJson(target, { title: `${MARK} ok` }, 422, "a query string beside a good body"), url: `${target.viaNginx}/tasks?source=go` },
	],

	"titles that are too long, empty, blank or hold control characters get 422": target =>
		[
			`${MARK} ${"x".repeat(201)}`,
			`${MARK} ${"x".repeat(1000)}`,
			`${MARK} ${"x".repeat(10_000)}`,
			`${MARK} ${"😀".repeat(201)}`,
			"",
			" ",
			"   \t \n  ",
			"\u00a0\u3000\ufeff\u2003",
			`${MARK} a\nb`,
			`${MARK} a\rb`,
			`${MARK} a\tb`,
			`${MARK} \u0000`,
			`${MARK} \u0007 bell`,
			`${MARK} \u001b[31mred`,
			`${MARK} \u007f`,
			`${MARK} \u0085`,
			`${MARK} \u009b`,
		].map(title => postJson(target, { title }, 422, `title ${JSON.stringify(title).slice(0, 60)}`)),

	"__proto__, constructor and prototype keys get 422": target =>
		[
			`{"__proto__": {"title": "${MARK}"}}`,
			`{"title": "${MARK}", "__proto__": {"admin": true}}`,
			`{"constructor": {"prototype": {"title": "${MARK}"}}}`,
			`{"title": "${MARK}", "constructor": {}}`,
			`{"title": "${MARK}", "prototype": {}}`,
			`{"prototype": "${MARK}"}`,
			`{"title": {"__proto__": "${MARK}"}}`,
		].map(body => post(target, body, body, 422)),

	"deeply nested bodies get 422": (target, limit) => {
		const depth = Math.floor((limit - 40) / 2);
		return [
			post(target, `a title in arrays ${depth} deep`, `{"title": ${nested(depth)}}`, 422),
			post(target, `a title in objects ${Math.floor(depth / 5)} deep`, `{"title": ${nested(Math.floor(depth / 5), '{"a":', "}", "1")}}`, 422),
			post(target, "a title in arrays 40 deep", `{"title": ${nested(40, "[", "]", `"${MARK}"`)}}`, 422),
			post(target, `an unknown field ${depth} deep beside a good title`, `{"title": "${MARK}", "x": ${nested(depth - 20)}}`, 422),
			post(target, `a body of arrays ${depth} deep`, nested(depth), 422),
			post(target, `a body of mixed nesting`, `{"a": ${nested(Math.floor(depth / 6), '[{"a":', "}]", "null")}}`, 422),
		];
	},

	"arrays as body get 422": target =>
		["[]", `[{"title": "${MARK}"}]`, `["${MARK}"]`, "[null]", "[[]]", "[1, 2, 3]"].map(body => post(target, `body ${body}`, body, 422)),

	"huge numbers get 422": target =>
		[
			'{"title": 1e308}',
			'{"title": 1e400}',
			'{"title": -1e400}',
			'{"title": 1e-400}',
			'{"title": 123456789012345678901234567890}',
			'{"title": 9007199254740993}',
			`{"title": "${MARK}", "n": 1e999}`,
		].map(body => post(target, body, body, 422)),

	"malformed unicode gets 400 (bytes) or 422 (escapes)": target => [
		post(target, "an unpaired high surrogate", `{"title": "${MARK} \\ud800"}`, 422),
		post(target, "an unpaired low surrogate", `{"title": "${MARK} \\udfff"}`, 422),
		post(target, "surrogates in the wrong order", `{"title": "${MARK} \\udc00\\ud800"}`, 422),
		post(target, "half an emoji", `{"title": "${MARK} \\ud83d"}`, 422),
		withRawBytes(target, "byte 0xFF", [0xff]),
		withRawBytes(target, "an overlong '/'", [0xc0, 0xaf]),
		withRawBytes(target, "a surrogate encoded in UTF-8", [0xed, 0xa0, 0x80]),
		withRawBytes(target, "a truncated 3-byte sequence", [0xe2, 0x82]),
		withRawBytes(target, "a 5-byte sequence", [0xf8, 0x88, 0x80, 0x80, 0x80]),
		withRawBytes(target, "a code point above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]),
		withRawBytes(target, "Latin-1 é", [0xe9]),
		post(target, "UTF-16 bytes declared as UTF-8", Buffer.from(JSON.stringify({ title: `${MARK} utf16` }), "utf16le"), 400),
	],

	"bad list queries get 422": target =>
		[
			"page=-1",
			"page=0",
			"page=abc",
			"page=1.5",
			"page=",
			"page=1e400",
			"page=NaN",
			"page=Infinity",
			"pageSize=1000",
			"pageSize=101",
			"pageSize=0",
			"pageSize=-5",
			"pageSize=abc",
			"pageSize=2.5",
			"page=-1&pageSize=1000",
		].map(query => request(target, "GET", `/tasks?${query}`, 422)),

	"unknown task ids get 404": target => [
		...[
			randomUUID(),
			randomUUID(),
			"no-such-task",
			"507f1f77bcf86cd799439011",
			"null",
			"undefined",
			"0",
			"-1",
			`${MARK}`,
			"%20",
			"%F0%9F%92%A9",
			"%2e%2e",
		].map(id => request(target, "GET", `/tasks/${id}`, 404)),
		request(target, "GET", `/tasks/${"x".repeat(101)}`, 422),
		// Nginx refuses a path that decodes to a NUL byte itself, in the same JSON shape.
		request(target, "GET", "/tasks/%00", 400),
	],

	"wrong methods get 404 or 405": target => [
		...["PUT", "PATCH", "DELETE"].map(method => request(target, method, "/tasks", [404, 405], JSON_TYPE)),
		...["PUT", "PATCH", "DELETE", "POST"].map(method => request(target, method, `/tasks/${randomUUID()}`, [404, 405], JSON_TYPE)),
		request(target, "POST", "/health/ready", [404, 405]),
		request(target, "DELETE", "/health/live", [404, 405]),
		request(target, "OPTIONS", "/tasks", 405),
		request(target, "OPTIONS", `/tasks/${randomUUID()}`, 405),
		// A CORS preflight that names POST, with a task in it: must not run the POST action.
		{
			...request(target, "OPTIONS", "/tasks", 405, { ...JSON_TYPE, "Access-Control-Request-Method": "POST" }),
			what: "OPTIONS /tasks as a preflight for POST, with a task",
			body: JSON.stringify({ title: `${MARK} via OPTIONS` }),
		},
	],
};

interface Answer {
	status: number;
	contentType: string | null;
	body: string;
}

async function send(bad: BadRequest): Promise<Answer | Error> {
	try {
		const response = await fetch(bad.url, {
			method: bad.method,
			headers: bad.headers,
			body: bad.body,
			// fetch insists on it for a stream body (the chunked one).
			duplex: "half",
			signal: AbortSignal.timeout(15_000),
		});
		return { status: response.status, contentType: response.headers.get("content-type"), body: await response.text() };
	} catch (err) {
		return err as Error;
	}
}

/** What is wrong with the answer to a bad request, or undefined if it is the expected JSON 4xx. */
function problemWith(bad: BadRequest, answer: Answer | Error): string | undefined {
	const label = `${bad.method} ${bad.url.replace(/^http:\/\/[^/]+/, "")} (${bad.what})`;
	if (answer instanceof Error) return `${label}: no answer (${(answer.cause as Error | undefined)?.message ?? answer.message})`;
	const expected = ([] as number[]).concat(bad.expected);
	if (!expected.includes(answer.status) || answer.status < 400 || answer.status > 499) {
		return `${label}: ${answer.status} instead of ${expected.join(" or ")}: ${answer.body.slice(0, 200)}`;
	}
	if (!answer.contentType?.startsWith("application/json")) return `${label}: ${answer.status} with ${answer.contentType}, not JSON`;
	try {
		const error = JSON.parse(answer.body) as { code?: unknown; message?: unknown };
		if (error.code !== answer.status || typeof error.message !== "string") return `${label}: not a JSON error: ${answer.body.slice(0, 200)}`;
	} catch {
		return `${label}: unparsable JSON: ${answer.body.slice(0, 200)}`;
	}
	return undefined;
}

describe("malformed input through Nginx to both gateways", () => {
	let stack: Stack;
	let mongo: MongoClient;
	let targets: Target[];
	let maxBodyBytes: number;
	let startedAt: Date;
	let deadLetteredBefore: number;
	let sent = 0;

	beforeAll(async () => {
		stack = await gatewaysReady();
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
		maxBodyBytes = Number(stack.env.MAX_BODY_BYTES ?? loadConfig({}).maxBodyBytes);
		targets = GATEWAYS.map(gateway => ({
			gateway,
			viaNginx: `${stack.baseUrl}/${gateway}`,
			direct: `http://127.0.0.1:${gateway === "flask" ? stack.env.FLASK_PORT : stack.env.GO_PORT}`,
		}));
		// Stored documents carry processed_at; anything processed from here on must be the sentinels'.
		startedAt = new Date();
		deadLetteredBefore = await deadLetteredCount(stack.taskQueue);
	});

	afterAll(async () => {
		await leaveStackHealthy();
		await removeTestTasks(mongo, stack, MARK);
	}, 180_000);

	it.each(Object.keys(CATEGORIES))("%s, as a JSON error", async category => {
		const requests = targets.flatMap(target => CATEGORIES[category](target, maxBodyBytes));
		const answers = await inParallel(requests, CONCURRENCY, send);
		sent += requests.length;
		expect(requests.map((bad, i) => problemWith(bad, answers[i])).filter(Boolean)).toEqual([]);
	});

	it("sent at least 500 malformed requests", () => {
		expect(sent).toBeGreaterThanOrEqual(500);
	});

	it("leaves the gateways up and ready, taking a valid task right after", async () => {
		await expect(stackCommand("status")).resolves.toBeUndefined();
		for (const gateway of GATEWAYS) {
			expect((await fetch(`${stack.baseUrl}/${gateway}/health/ready`)).status).toBe(200);
			expect((await postTask(stack.gatewayUrl(gateway), titled(`${MARK} sentinel via ${gateway}`))).status).toBe(202);
		}
	});

	it("queued and stored nothing but the two valid tasks, and dead-lettered nothing", async () => {
		const tasks = mongo.db(stack.dbName).collection<{ _id: string; title: string }>("tasks");
		// The sentinels went through the queue behind every bad request: once they are stored, anything queued before them would be too.
		const sentinels = { title: { $regex: `^${MARK} sentinel via ` } };
		await eventually("both sentinels stored", async () => ((await tasks.countDocuments(sentinels)) === 2 ? true : undefined));
		const processedSinceStart = await tasks.find({ processed_at: { $gte: startedAt } }, { projection: { title: 1 } }).toArray();
		expect(processedSinceStart.map(document => document.title).sort()).toEqual(GATEWAYS.map(gateway => `${MARK} sentinel via ${gateway}`));
		expect(await tasks.countDocuments({ title: { $regex: MARK } })).toBe(2);
		expect(await deadLetteredCount(stack.taskQueue)).toBe(deadLetteredBefore);
	});
});
