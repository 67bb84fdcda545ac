import Validator from "fastest-validator";
import {
	decodeTaskMessage,
	EXTERNAL_SOURCE,
	messageFormatProblem,
	nameBasedUuid,
	newTask,
	encodeTaskMessage,
	processedTaskRule,
	stampProcessed,
} from "../../../lib/task";

const decode = (value: unknown, messageId?: string) => decodeTaskMessage(Buffer.from(JSON.stringify(value)), messageId);

describe("queue messages", () => {
	it("round-trips a gateway's message", () => {
		const task = newTask("round trip", "go");
		expect(decodeTaskMessage(encodeTaskMessage(task))).toEqual({ ok: true, task });
	});

	it("accepts a title-only message, taking the AMQP messageId as task id", () => {
		const result = decode({ title: "from an older producer" }, "legacy-17");
		expect(result).toMatchObject({ ok: true, task: { id: "legacy-17", title: "from an older producer", source: EXTERNAL_SOURCE } });
	});

	it("derives the same id for a redelivered title-only message without messageId", () => {
		const body = Buffer.from('{"title":"no id at all"}');
		const first = decodeTaskMessage(body);
		const again = decodeTaskMessage(body);
		expect(first.ok && again.ok && first.task.id === again.task.id).toBe(true);
	});

	it("drops unknown fields of foreign producers", () => {
		const result = decode({ title: "extra", priority: 3 });
		expect(result.ok && Object.keys(result.task).sort()).toEqual(["created_at", "id", "source", "title"]);
	});

	it.each([
		["non-JSON bytes", Buffer.from("\u0000\u0001 not json")],
		["a JSON array", Buffer.from("[1,2]")],
		["JSON null", Buffer.from("null")],
		["no title", Buffer.from('{"id":"x"}')],
		["an empty title", Buffer.from('{"title":"  "}')],
		["a title with a newline", Buffer.from('{"title":"a\\nb"}')],
		["a bad date", Buffer.from('{"title":"ok","created_at":"yesterday-ish"}')],
		["an unpaired surrogate in the title", Buffer.from('{"title":"a\\udc00b"}')],
		["a title nested thousands deep", Buffer.from(`{"title":${"[".repeat(5000)}${"]".repeat(5000)}}`)],
	])("refuses %s with a reason", (_case, body) => {
		const result = decodeTaskMessage(body);
		expect(result.ok).toBe(false);
		expect(!result.ok && result.reason.length).toBeGreaterThan(0);
	});

	it.each([
		["a year past 9999, as a string", "+010000-01-01T00:00:00.000Z"],
		["a year past 9999, in milliseconds", 253402300800000],
		["a year before 0000, in milliseconds", -62198755200000],
		["milliseconds past what a Date holds", 1e20],
		["a boolean", true],
		["an array", [2024]],
		["an object", { year: 2024 }],
	])("refuses a created_at of %s as invalid, naming the field", (_case, createdAt) => {
		const result = decode({ title: "dated", created_at: createdAt });
		expect(result).toMatchObject({ ok: false, kind: "invalid", reason: expect.stringContaining("created_at") });
	});

	it.each([
		["a date string", "2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000Z"],
		["milliseconds", 0, "1970-01-01T00:00:00.000Z"],
		["the last millisecond of 9999", 253402300799999, "9999-12-31T23:59:59.999Z"],
	])("accepts a created_at of %s, as an ISO date", (_case, createdAt, iso) => {
		expect(decode({ title: "dated", created_at: createdAt })).toMatchObject({ ok: true, task: { created_at: iso } });
	});

	it("accepts exactly what the store takes: every decoded task passes the store's rule", () => {
		const storeCheck = new Validator({ useNewCustomCheckerFunction: true }).compile({ $$root: true, ...processedTaskRule });
		const bodies = [
			{ title: " padded " },
			{ title: "dated", created_at: "0000-01-01T00:00:00Z" },
			{ title: "x".repeat(200), id: "i".repeat(100), source: "s".repeat(50) },
		];
		for (const body of bodies) {
			const result = decode(body);
			expect(result.ok && storeCheck(stampProcessed(result.task, { processedBy: "worker-py", nodeID: "n" }))).toBe(true);
		}
	});

	it.each([
		["an id over 100 characters", { title: "t", id: "i".repeat(101) }, undefined],
		["a messageId over 100 characters", { title: "t" }, "m".repeat(101)],
		["an empty messageId", { title: "t" }, ""],
		["a numeric id", { title: "t", id: 42 }, undefined],
		["a source over 50 characters", { title: "t", source: "s".repeat(51) }, undefined],
		["a numeric title", { title: 42 }, undefined],
	])("refuses %s as invalid", (_case, body, messageId) => {
		expect(decode(body, messageId)).toMatchObject({ ok: false, kind: "invalid" });
	});

	it.each([
		["a stray continuation byte", [0x80]],
		["Latin-1 é", [0xe9]],
		["a surrogate encoded in UTF-8", [0xed, 0xa0, 0x80]],
	])("refuses a title holding %s as unreadable, not as replacement characters", (_case, bytes) => {
		const body = Buffer.concat([Buffer.from('{"title":"bad '), Buffer.from(bytes), Buffer.from('"}')]);
		expect(decodeTaskMessage(body)).toEqual({ ok: false, kind: "unreadable", reason: "body is not valid UTF-8" });
	});

	it.each([
		[undefined, undefined, undefined],
		["application/json", undefined, undefined],
		["application/json; charset=utf-8", undefined, undefined],
		["application/vnd.task+json", "", undefined],
		["text/plain", undefined, 'content type "text/plain" is not JSON'],
		["application/octet-stream", undefined, 'content type "application/octet-stream" is not JSON'],
		["application/json", "gzip", 'content encoding "gzip" is not supported'],
	])("judges content type %s with encoding %s: %s", (contentType, contentEncoding, problem) => {
		expect(messageFormatProblem(contentType, contentEncoding)).toBe(problem);
	});

	it("makes version-5 UUIDs that depend only on the name", () => {
		expect(nameBasedUuid("key-1")).toBe(nameBasedUuid("key-1"));
		expect(nameBasedUuid("key-1")).not.toBe(nameBasedUuid("key-2"));
		expect(nameBasedUuid("key-1")).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
	});
});
