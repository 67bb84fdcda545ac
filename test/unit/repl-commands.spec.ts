import { ServiceBroker } from "moleculer";
import { replCommands } from "../../repl/commands";
import { startEmbeddedCluster, type EmbeddedCluster } from "../support/embedded-cluster";
import { eventually } from "../support/eventually";

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
});
