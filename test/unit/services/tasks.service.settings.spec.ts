import { ServiceBroker } from "moleculer";
import type { TaskPage } from "../../../lib/store/task-reads";
import { stampProcessed, newTask } from "../../../lib/task";
import TasksService from "../../../services/tasks.service";

describe("tasks service settings", () => {
	const broker = new ServiceBroker({ nodeID: "tasks-settings", logger: false });

	beforeAll(async () => {
		broker.createService({ ...TasksService, settings: { ...TasksService.settings, pageSize: 2 } });
		await broker.start();
		const stamp = { processedBy: "worker-py", nodeID: "tasks-settings" };
		await broker.call("tasks.storeProcessed", { tasks: ["a", "b", "c"].map(title => stampProcessed(newTask(title, "flask"), stamp)) });
	});
	afterAll(() => broker.stop());

	it("lists settings.pageSize tasks when the caller names no page size", async () => {
		const page = await broker.call<TaskPage, object>("tasks.list", {});
		expect(page).toMatchObject({ pageSize: 2, total: 3, totalPages: 2 });
		expect(page.rows).toHaveLength(2);
	});
});
