import { newTask, type ProcessedTask } from "../../../lib/task";
import type { TaskStore } from "../../../lib/store/task-store";
import { startEmbeddedCluster, type EmbeddedCluster } from "../../support/embedded-cluster";
import { eventually } from "../../support/eventually";

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
