import { ServiceBroker } from "moleculer";
import { newTask, stampProcessed, type ProcessedTask } from "../../lib/task";
import type { TaskPage } from "../../lib/store/task-reads";
import type { TaskStore } from "../../lib/store/task-store";
import { startEmbeddedCluster, type EmbeddedCluster } from "../support/embedded-cluster";
import TasksService from "../../services/tasks.service";
import { eventually } from "../support/eventually";

describe("task workers (worker-py, worker-go)", () => {
	let cluster: EmbeddedCluster;

	beforeAll(async () => {
		cluster = await startEmbeddedCluster("worker-node");
	});
	afterAll(() => cluster.stop());

	// Local calls hand back the store's Date objects; JSON clients see ISO strings.
	const storedRows = () => cluster.broker.call<ProcessedTask[], object>("tasks.find", { limit: 1000 });

	it("stamps each task with the worker role, the node and the processing time", async () => {
		const task = newTask("stamp me", "flask");
		await cluster.queue.publish(task);
		const row = await eventually("the task stored", async () => (await storedRows()).find(stored => stored.id === task.id));
		expect(row).toMatchObject({
			id: task.id,
			title: "stamp me",
			source: "flask",
			status: "processed",
			node_id: "worker-node",
		});
		expect(new Date(row.created_at).toISOString()).toBe(task.created_at);
		expect(["worker-py", "worker-go"]).toContain(row.processed_by);
		expect(new Date(row.processed_at).getTime()).toBeGreaterThanOrEqual(Date.parse(task.created_at));
	});

	it("lets both worker roles compete for the queue", async () => {
		await Promise.all(Array.from({ length: 400 }, (_, n) => cluster.queue.publish(newTask(`load ${n}`, "go"))));
		const rows = await eventually("all 400 tasks stored", async () => {
			const all = (await storedRows()).filter(row => row.title.startsWith("load "));
			return all.length === 400 ? all : undefined;
		});
		expect(new Set(rows.map(row => row.processed_by))).toEqual(new Set(["worker-py", "worker-go"]));
	});

	it("stores a redelivered task once", async () => {
		const task = newTask("delivered twice", "go");
		await cluster.queue.publish(task);
		await cluster.queue.publish(task);
		await eventually("the task stored", async () => (await storedRows()).find(row => row.id === task.id));
		await new Promise(resolve => setTimeout(resolve, 50));
		expect((await storedRows()).filter(row => row.id === task.id)).toHaveLength(1);
	});

	it("acknowledges nothing until the store write succeeds, then retries", async () => {
		const { store } = cluster.broker.getLocalService("tasks") as unknown as { store: TaskStore };
		const failOnce = jest.spyOn(store, "insertProcessed").mockRejectedValueOnce(new Error("store is away"));
		const task = newTask("survives a store error", "flask");
		await cluster.queue.publish(task);
		await eventually("the task stored after a retry", async () => (await storedRows()).find(row => row.id === task.id), 3000);
		expect(failOnce.mock.calls.length).toBeGreaterThanOrEqual(2);
		expect((await cluster.queue.depth()).deadLettered).toBe(0);
		failOnce.mockRestore();
	});
});

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
