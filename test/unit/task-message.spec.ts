import { decodeTaskMessage, EXTERNAL_SOURCE, nameBasedUuid, newTask, encodeTaskMessage } from "../../lib/task";

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

	it("makes version-5 UUIDs that depend only on the name", () => {
		expect(nameBasedUuid("key-1")).toBe(nameBasedUuid("key-1"));
		expect(nameBasedUuid("key-1")).not.toBe(nameBasedUuid("key-2"));
		expect(nameBasedUuid("key-1")).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
	});
});
