import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ServiceBroker } from "moleculer";
import { config, loadConfig } from "../../lib/config";
import TasksService from "../../services/tasks.service";
import { QueueUnavailableError } from "../../lib/errors";
import type { TaskStore } from "../../lib/store/task-store";
import { READ_TIMEOUT_MS } from "../../lib/store/read-shedding";
import type { AcceptedTask } from "../../lib/task";
import { postTask, readJson, titled, type ApiError } from "../support/http";
import { startEmbeddedCluster, type EmbeddedCluster } from "../support/embedded-cluster";

/** The gateways' rules of issue 26: Idempotency-Key, what a 5xx tells, how deep pages by number reach, the store's raw queries. */

const json = { "Content-Type": "application/json" };

describe("gateway rules", () => {
	let cluster: EmbeddedCluster;

	beforeAll(async () => {
		cluster = await startEmbeddedCluster("rules-node");
	});
	afterAll(() => cluster.stop());
	afterEach(() => jest.restoreAllMocks());

	it("listens on loopback unless BIND_ADDRESS says otherwise", () => {
		expect(loadConfig({}).bindAddress).toBe("127.0.0.1");
		expect(loadConfig({ BIND_ADDRESS: "0.0.0.0" }).bindAddress).toBe("0.0.0.0");
		for (const gateway of ["api-flask", "api-go"]) {
			const { server } = cluster.broker.getLocalService(gateway) as unknown as { server: Server };
			expect((server.address() as AddressInfo).address).toBe(config.bindAddress);
		}
	});

	describe("Idempotency-Key", () => {
		it.each([
			["201 characters", "k".repeat(201)],
			["a space", "order 42"],
			["an empty value", ""],
			["a character beyond ASCII", "ordér-42"],
			["a repeated header (joined with a comma and a space)", ["a", "b"]],
		])("refuses a key with %s: 400, nothing queued", async (_case, key) => {
			const published = jest.spyOn(cluster.queue, "publish");
			const headers = new Headers(json);
			for (const value of [key].flat()) headers.append("Idempotency-Key", value);
			const res = await fetch(`${cluster.flaskUrl}/tasks`, { method: "POST", headers, body: titled("bad key") });
			expect(res.status).toBe(400);
			expect(await readJson<ApiError>(res)).toMatchObject({ code: 400, type: "INVALID_IDEMPOTENCY_KEY" });
			expect(published).not.toHaveBeenCalled();
		});

		it("takes a key of 200 visible ASCII characters", async () => {
			const key = "!~".repeat(100);
			const first = await postTask(cluster.flaskUrl, titled("long key"), { ...json, "Idempotency-Key": key });
			expect(first.status).toBe(202);
			const again = await postTask(cluster.flaskUrl, titled("long key"), { ...json, "Idempotency-Key": key });
			expect(await readJson(again)).toEqual(await readJson(first));
		});

		it("refuses the same key with another body (422), and still answers the first body with the first task", async () => {
			const headers = { ...json, "Idempotency-Key": "reused-key-1" };
			const first = await readJson<AcceptedTask>(await postTask(cluster.goUrl, titled("the first body"), headers));
			const published = jest.spyOn(cluster.queue, "publish");
			const other = await postTask(cluster.goUrl, titled("another body"), headers);
			expect(other.status).toBe(422);
			expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			const same = await postTask(cluster.goUrl, titled("the first body"), headers);
			expect(same.status).toBe(202);
			expect(await readJson(same)).toEqual(first);
			expect(published).not.toHaveBeenCalled();
		});
	});

	describe("a server error's body", () => {
		const internals = ["10.1.2.3", "5672", "ECONNREFUSED", "rules-node", "tasks.list", "at "];

		it("names the error's type and the request id, and nothing of the failure itself", async () => {
			jest.spyOn(cluster.queue, "publish").mockRejectedValue(Object.assign(new Error("connect ECONNREFUSED 10.1.2.3:5672"), { code: "ECONNREFUSED" }));
			const res = await postTask(cluster.flaskUrl, titled("fails inside"), { ...json, "X-Request-Id": "req-500-a" });
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
			jest.spyOn(cluster.queue, "publish").mockRejectedValue(new QueueUnavailableError("RabbitMQ at 10.1.2.3:5672 is not connected"));
			const res = await postTask(cluster.flaskUrl, titled("queue away"), { ...json, "X-Request-Id": "req-503-a" });
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
			const timed = await startEmbeddedCluster("timed-rules-node");
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
				for (const internal of ["timed-rules-node", "tasks.list"]) expect(text).not.toContain(internal);
			} finally {
				await timed.stop();
			}
		}, 15_000);

		it("leaves a client error's message and data as they are", async () => {
			const res = await postTask(cluster.flaskUrl, "{}");
			expect(res.status).toBe(422);
			const body = await readJson<ApiError & { requestId?: string }>(res);
			expect(body.data[0].field).toBe("title");
			expect(body.requestId).toBeUndefined();
		});
	});

	describe("pages by number", () => {
		it.each([
			["page=51", 51 * 20],
			["page=11&pageSize=100", 1100],
			["page=1000000000000", 1e12 * 20],
		])("refuses %s (%d tasks deep) with 422, pointing to ?after=", async query => {
			const res = await fetch(`${cluster.flaskUrl}/tasks?${query}`);
			expect(res.status).toBe(422);
			const body = await readJson<ApiError>(res);
			expect(body.data[0]).toMatchObject({ field: "page", type: "pageReach" });
			expect(body.data[0].message).toContain("?after=");
		});

		it.each(["page=50", "page=10&pageSize=100"])("serves %s, the last page within reach", async query => {
			expect((await fetch(`${cluster.flaskUrl}/tasks?${query}`)).status).toBe(200);
		});
	});
});

describe("the store's raw queries (tasks.find, tasks.count)", () => {
	const brokers: ServiceBroker[] = [];
	afterAll(() => Promise.all(brokers.map(broker => broker.stop())));

	it("answer on the store's own node, and to no other node on the bus", async () => {
		const storeNode = new ServiceBroker({ nodeID: "store-node", namespace: "raw-queries", transporter: "Fake", logger: false });
		const otherNode = new ServiceBroker({ nodeID: "other-node", namespace: "raw-queries", transporter: "Fake", logger: false });
		brokers.push(storeNode, otherNode);
		storeNode.createService(TasksService);
		await Promise.all(brokers.map(broker => broker.start()));
		await otherNode.waitForServices("tasks");

		await expect(storeNode.call("tasks.find", { query: {} })).resolves.toEqual([]);
		await expect(storeNode.call("tasks.count", { query: {} })).resolves.toBe(0);
		for (const action of ["tasks.find", "tasks.count"]) {
			await expect(otherNode.call(action, { query: { $where: "sleep(1000)" } })).rejects.toMatchObject({ name: "ServiceNotFoundError" });
		}
		// What the API uses stays callable from anywhere.
		await expect(otherNode.call("tasks.list", { pageSize: 1 })).resolves.toMatchObject({ rows: [] });
	});
});
