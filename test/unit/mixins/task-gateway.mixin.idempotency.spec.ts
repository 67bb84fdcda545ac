import { postTask, readJson, titled, type ApiError } from "../../support/http";
import { embeddedClusterForSuite } from "../../support/embedded-cluster";
import type { AcceptedTask } from "../../../lib/task";

/** The Idempotency-Key header at the gateways (lib/http/idempotency.ts): which keys they take, and a key reused with another body. */

const json = { "Content-Type": "application/json" };

describe("Idempotency-Key", () => {
	const cluster = embeddedClusterForSuite("idempotency-node");

	it.each([
		["201 characters", "k".repeat(201)],
		["a space", "order 42"],
		["an empty value", ""],
		["a character beyond ASCII", "ordér-42"],
		["a repeated header (joined with a comma and a space)", ["a", "b"]],
	])("refuses a key with %s: 400, nothing queued", async (_case, key) => {
		const published = jest.spyOn(cluster().queue, "publish");
		const headers = new Headers(json);
		for (const value of [key].flat()) headers.append("Idempotency-Key", value);
		const res = await fetch(`${cluster().flaskUrl}/tasks`, { method: "POST", headers, body: titled("bad key") });
		expect(res.status).toBe(400);
		expect(await readJson<ApiError>(res)).toMatchObject({ code: 400, type: "INVALID_IDEMPOTENCY_KEY" });
		expect(published).not.toHaveBeenCalled();
	});

	it("takes a key of 200 visible ASCII characters", async () => {
		const key = "!~".repeat(100);
		const first = await postTask(cluster().flaskUrl, titled("long key"), { ...json, "Idempotency-Key": key });
		expect(first.status).toBe(202);
		const again = await postTask(cluster().flaskUrl, titled("long key"), { ...json, "Idempotency-Key": key });
		expect(await readJson(again)).toEqual(await readJson(first));
	});

	it("refuses the same key with another body (422), queueing nothing", async () => {
		const headers = { ...json, "Idempotency-Key": "reused-key-1" };
		expect((await postTask(cluster().goUrl, titled("the first body"), headers)).status).toBe(202);
		const published = jest.spyOn(cluster().queue, "publish");
		const other = await postTask(cluster().goUrl, titled("another body"), headers);
		expect(other.status).toBe(422);
		expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		expect(published).not.toHaveBeenCalled();
	});

	it("answers the same key with the same body by the first answer, and queues the first task again, which the store keeps once", async () => {
		const headers = { ...json, "Idempotency-Key": "retried-key-1" };
		const first = await readJson<AcceptedTask>(await postTask(cluster().goUrl, titled("the first body"), headers));
		const published = jest.spyOn(cluster().queue, "publish");
		const same = await postTask(cluster().goUrl, titled("the first body"), headers);
		expect(same.status).toBe(202);
		expect(await readJson(same)).toEqual(first);
		const { status: _queued, ...firstTask } = first;
		expect(published.mock.calls).toEqual([[firstTask]]);
	});
});
