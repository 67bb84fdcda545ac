import { ServiceBroker } from "moleculer";
import { newTask, stampProcessed } from "../../../lib/task";
import type { TaskPage } from "../../../lib/store/task-reads";
import TasksService from "../../../services/tasks.service";

/**
 * The tasks service on moleculer-db's memory adapter: what it stores, and who may query the store.
 * Its reads against a MongoDB wire server: tasks.service.reads.spec.ts.
 */

describe("tasks store", () => {
	let broker: ServiceBroker;

	beforeAll(async () => {
		broker = new ServiceBroker({ logger: false });
		broker.createService(TasksService);
		await broker.start();
	});
	afterAll(() => broker.stop());

	it("keeps the first processing of a task id and ignores later ones", async () => {
		const stored = {
			id: "0b6f5a7e-1111-4b2a-9c3d-5e6f7a8b9c0d",
			title: "once",
			source: "flask",
			created_at: new Date().toISOString(),
			status: "processed",
			processed_by: "worker-py",
			processed_at: new Date().toISOString(),
			node_id: "a",
		};
		await broker.call("tasks.storeProcessed", { tasks: [stored] });
		await broker.call("tasks.storeProcessed", { tasks: [{ ...stored, processed_by: "worker-go", node_id: "b" }] });
		const page = await broker.call<TaskPage, object>("tasks.list", {});
		expect(page.total).toBe(1);
		expect(page.rows[0]).toMatchObject({ id: stored.id, processed_by: "worker-py", node_id: "a" });
	});

	it("claims an Idempotency-Key's task id for its first task, in memory", async () => {
		const first = newTask("first", "flask", "key-task-id");
		expect(await broker.call("tasks.claimKey", { task: first })).toEqual({ holder: first, first: true });
		expect(await broker.call("tasks.claimKey", { task: newTask("second", "go", "key-task-id") })).toEqual({ holder: first, first: false });
	});

	it("takes a task id again with the same title from the other gateway as a redelivery, and refuses it with another title", async () => {
		// One Idempotency-Key through both gateways: one id, one title, two sources.
		const first = stampProcessed(newTask("retried through the other gateway", "flask"), { processedBy: "worker-py", nodeID: "a" });
		await broker.call("tasks.storeProcessed", { tasks: [first] });
		const retry = await broker.call<{ stored: number; refused: unknown[] }, object>("tasks.storeProcessed", { tasks: [{ ...first, source: "go" }] });
		expect(retry.refused).toEqual([]);
		const other = await broker.call<{ refused: unknown[] }, object>("tasks.storeProcessed", { tasks: [{ ...first, title: "another body" }] });
		expect(other.refused).toEqual([expect.objectContaining({ index: 0, reason: "duplicate_id" })]);
		const page = await broker.call<TaskPage, object>("tasks.list", { query: { id: first.id } });
		expect(page.rows).toEqual([expect.objectContaining({ title: first.title, source: "flask" })]);
	});

	it.each([
		["a date that is not ISO 8601", { created_at: "yesterday" }],
		["another status", { status: "queued" }],
		["no worker stamp", { processed_by: undefined }],
		["a title with a newline", { title: "two\nlines" }],
	])("refuses a batch holding a task with %s, and stores none of it", async (_problem, change) => {
		const valid = stampProcessed(newTask("valid neighbour", "go"), { processedBy: "worker-go", nodeID: "n" });
		const invalid = { ...stampProcessed(newTask("invalid", "go"), { processedBy: "worker-go", nodeID: "n" }), ...change };
		await expect(broker.call("tasks.storeProcessed", { tasks: [valid, invalid] })).rejects.toMatchObject({ name: "ValidationError", code: 422 });
		const page = await broker.call<TaskPage, object>("tasks.list", { query: { id: valid.id } });
		expect(page.rows).toEqual([]);
	});

	it.each(["create", "insert", "update", "remove"])("does not expose moleculer-db's %s action", async action => {
		await expect(broker.call(`tasks.${action}`, {})).rejects.toThrow(/is not found/);
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
