import { QueueUnavailableError } from "../../../../lib/errors";
import type { TaskStore } from "../../../../lib/store/task-store";
import { READ_TIMEOUT_MS } from "../../../../lib/store/read-shedding";
import { postTask, readJson, titled, type ApiError } from "../../../support/http";
import { embeddedClusterForSuite, startEmbeddedCluster } from "../../../support/embedded-cluster";

/** What a client sees of an error at the gateways (lib/http/public-errors.ts): a server error tells its type and the request id, nothing more. */

const json = { "Content-Type": "application/json" };

describe("a server error's body", () => {
	const cluster = embeddedClusterForSuite("errors-node");

	const internals = ["10.1.2.3", "5672", "ECONNREFUSED", "errors-node", "tasks.list", "at "];

	it("names the error's type and the request id, and nothing of the failure itself", async () => {
		jest.spyOn(cluster().queue, "publish").mockRejectedValue(Object.assign(new Error("connect ECONNREFUSED 10.1.2.3:5672"), { code: "ECONNREFUSED" }));
		const res = await postTask(cluster().flaskUrl, titled("fails inside"), { ...json, "X-Request-Id": "req-500-a" });
		expect(res.status).toBe(500);
		const text = await res.text();
		expect(JSON.parse(text)).toEqual({
			name: "InternalServerError",
			message: "The server could not handle the request.",
			code: 500,
			type: "INTERNAL_ERROR",
			requestId: "req-500-a",
		});
		for (const internal of internals) expect(text).not.toContain(internal);
	});

	it("keeps a Moleculer error's name and type, and Retry-After, with a message of its status", async () => {
		jest.spyOn(cluster().queue, "publish").mockRejectedValue(new QueueUnavailableError("RabbitMQ at 10.1.2.3:5672 is not connected"));
		const res = await postTask(cluster().flaskUrl, titled("queue away"), { ...json, "X-Request-Id": "req-503-a" });
		expect(res.status).toBe(503);
		expect(res.headers.get("retry-after")).toBe("1");
		const body = await readJson<ApiError & { requestId: string }>(res);
		expect(body).toEqual({
			name: "MoleculerError",
			message: "The service is not available right now; retry shortly.",
			code: 503,
			type: "SERVICE_UNAVAILABLE",
			requestId: "req-503-a",
		});
	});

	it("hides which node and action timed out", async () => {
		const timed = await startEmbeddedCluster("timed-errors-node");
		try {
			const store = (timed.broker.getLocalService("tasks") as unknown as { store: TaskStore }).store;
			// Longer than the read actions' own timeout (lib/store/read-shedding.ts).
			jest.spyOn(store, "estimatedTotal").mockImplementation(() => new Promise(resolve => setTimeout(() => resolve(0), READ_TIMEOUT_MS + 200)));
			const res = await fetch(`${timed.goUrl}/tasks`);
			expect(res.status).toBe(504);
			const text = await res.text();
			expect(JSON.parse(text)).toMatchObject({
				name: "StoreReadTimeoutError",
				type: "STORE_READ_TIMEOUT",
				requestId: res.headers.get("x-request-id"),
			});
			for (const internal of ["timed-errors-node", "tasks.list"]) expect(text).not.toContain(internal);
		} finally {
			await timed.stop();
		}
	}, 15_000);

	it("leaves a client error's message and data as they are", async () => {
		const res = await postTask(cluster().flaskUrl, "{}");
		expect(res.status).toBe(422);
		const body = await readJson<ApiError & { requestId?: string }>(res);
		expect(body.data[0].field).toBe("title");
		expect(body.requestId).toBeUndefined();
	});
});
