import { randomUUID } from "node:crypto";
import { newTask, stampProcessed, type ProcessedTask } from "../../lib/task";
import TasksService from "../../services/tasks.service";
import { TestDatabase } from "../support/test-database";

describe("tasks store on a MongoDB-protocol server", () => {
	const store = new TestDatabase();
	const { broker } = store;

	const processed = (title: string, processedBy = "worker-py"): ProcessedTask =>
		stampProcessed(newTask(title, "flask"), { processedBy, nodeID: "store-test" });

	beforeAll(() => store.start(TasksService, "tasks"));
	afterAll(() => store.stop());

	it("stores the SPEC's document with the task id as _id", async () => {
		const task = processed("stored as documented");
		await broker.call("tasks.storeProcessed", { tasks: [task] });
		const document = await store.db.collection("tasks").findOne({ _id: task.id as never });
		expect(document).toEqual({
			_id: task.id,
			title: "stored as documented",
			source: "flask",
			created_at: new Date(task.created_at),
			status: "processed",
			processed_by: "worker-py",
			processed_at: new Date(task.processed_at),
			node_id: "store-test",
		});
	});

	it("stores a redelivered batch once, keeping the first processing, and stores what is new in it", async () => {
		const first = [processed("a"), processed("b")];
		await broker.call("tasks.storeProcessed", { tasks: first });
		const redelivered = first.map(task => ({ ...task, processed_by: "worker-go" }));
		const fresh = processed("c", "worker-go");
		await broker.call("tasks.storeProcessed", { tasks: [...redelivered, fresh] });

		const tasks = store.db.collection("tasks");
		const ids = [...first, fresh].map(task => task.id as never);
		const stored = await tasks.find({ _id: { $in: ids } }).toArray();
		expect(stored).toHaveLength(3);
		expect(Object.fromEntries(stored.map(document => [document.title, document.processed_by]))).toEqual({
			a: "worker-py",
			b: "worker-py",
			c: "worker-go",
		});
	});

	it("lists newest first in moleculer-db's shape and finds one by id", async () => {
		type Page = { rows: { id: string; created_at: Date }[]; total: number | null; pageSize: number; next: string | null };
		const page = await broker.call<Page, object>("tasks.list", { pageSize: 2 });
		// An estimate on MongoDB; null on FerretDB, which would read every document to count.
		expect([4, null]).toContain(page.total);
		expect(page.rows).toHaveLength(2);
		expect(page.rows[0].created_at.getTime()).toBeGreaterThanOrEqual(page.rows[1].created_at.getTime());
		const rest = await broker.call<Page, object>("tasks.list", { pageSize: 2, after: page.next });
		expect(rest.rows).toHaveLength(2);
		expect(rest.next).toBeNull();
		expect(rest.rows[0].created_at.getTime()).toBeLessThanOrEqual(page.rows[1].created_at.getTime());
		expect(new Set([...page.rows, ...rest.rows].map(row => row.id)).size).toBe(4);
		const one = await broker.call<{ id: string }, object>("tasks.get", { id: page.rows[0].id });
		expect(one.id).toBe(page.rows[0].id);
		await expect(broker.call("tasks.get", { id: randomUUID() })).rejects.toMatchObject({ code: 404 });
	});

	it("finds a task by _id through the _id index, as the get does", async () => {
		const task = processed("looked up by id");
		await broker.call("tasks.storeProcessed", { tasks: [task] });
		const explained = await store.db.command({ explain: { find: "tasks", filter: { _id: task.id }, limit: 1, singleBatch: true } });
		// FerretDB on SQLite reports SQLite's plan: without tools/ferretdb/patches it is a SCAN of the
		// table. MongoDB reports IDHACK (7.0) or EXPRESS_IXSCAN (8.0).
		expect(JSON.stringify(explained.queryPlanner)).toMatch(/USING INDEX \S+__id_ |"IDHACK"|"EXPRESS_IXSCAN"/);
	});
});
