import { ServiceBroker } from "moleculer";
import { replCommands } from "../../../repl/commands";
import { newTask, type ProcessedTask } from "../../../lib/task";
import { startEmbeddedCluster, type EmbeddedCluster } from "../../support/embedded-cluster";
import { eventually } from "../../support/eventually";

const command = (name: string) => {
	const found = replCommands.find(candidate => candidate.command.split(" ")[0] === name);
	if (!found) throw new Error(`no REPL command ${name}`);
	return found;
};

describe("REPL commands on an operator node", () => {
	let cluster: EmbeddedCluster;
	let operator: ServiceBroker;
	let printed: unknown[][];

	beforeAll(async () => {
		// Two nodes over Moleculer's Fake transporter: the cluster, and an operator's REPL node
		// that runs no services and reaches everything remotely.
		cluster = await startEmbeddedCluster("cluster-node", "Fake");
		operator = new ServiceBroker({ nodeID: "repl-node", transporter: "Fake", logger: false });
		await operator.start();
		await operator.waitForServices(["tasks", "api-flask"]);
	});
	afterAll(async () => {
		await operator.stop();
		await cluster.stop();
	});
	beforeEach(() => {
		printed = [];
		jest.spyOn(console, "log").mockImplementation((...args) => void printed.push(args));
		jest.spyOn(console, "table").mockImplementation((...args) => void printed.push(args));
	});
	afterEach(() => jest.restoreAllMocks());

	it("posts a task through a gateway and shows it among the latest", async () => {
		await command("post").action(operator, { options: { via: "api-flask" }, title: "from the REPL" });
		expect(printed[0][0]).toMatchObject({ title: "from the REPL", status: "queued", source: "flask" });

		await eventually("the posted task among the latest", async () => {
			printed = [];
			await command("latest").action(operator, { options: {}, count: "5" });
			const rows = printed[0][0] as { title: string; processed_by: string }[];
			return rows.some(row => row.title === "from the REPL") ? rows : undefined;
		});
	});

	it("shows the depth and consumers of the task queue", async () => {
		const local = cluster.broker;
		await command("queue").action(local, { options: {} });
		expect(printed[0][0]).toEqual([{ queue: "task_queue", messages: 0, consumers: 2, deadLettered: 0 }]);
	});

	it("lists the dead letters with their reason and size, and replays them to the task queue", async () => {
		const local = cluster.broker;
		const owner = newTask("owns an id", "go");
		await cluster.queue.publish(owner);
		await eventually("the owner stored", async () =>
			(await local.call<ProcessedTask[], object>("tasks.find", { limit: 1000 })).find(row => row.id === owner.id),
		);
		await cluster.queue.publish({ ...owner, title: "another task, the same id" });
		await eventually("the other task dead-lettered", async () => ((await cluster.queue.depth()).deadLettered === 1 ? true : undefined));

		await command("dead").action(local, { options: {}, count: "5" });
		expect(printed[0][0]).toEqual([
			expect.objectContaining({
				messageId: owner.id,
				reason: expect.stringMatching(/^duplicate_id: /),
				bytes: expect.any(Number),
				head: expect.stringContaining("another task"),
			}),
		]);
		await command("replay").action(local, { options: {} });
		expect(printed[1][0]).toBe("1 messages moved back to the task queue");
		// Still another task with a taken id: it comes back to the dead-letter queue.
		await eventually("the replayed task judged again", async () => ((await cluster.queue.depth()).deadLettered === 1 ? true : undefined));
	});

	it("refuses a count that is not a positive integer", async () => {
		await expect(command("dead").action(cluster.broker, { options: {}, count: "0" })).rejects.toThrow(/positive integer/);
		await expect(command("replay").action(cluster.broker, { options: {}, count: "all" })).rejects.toThrow(/positive integer/);
	});
});
