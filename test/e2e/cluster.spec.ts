import { MongoClient } from "mongodb";
import type { ServiceBroker } from "moleculer";
import type { TaskDocument } from "../../lib/task";
import { connectToStack, inParallel, joinBus, type Stack } from "../support/stack";
import { eventually } from "../support/eventually";
import { postTask, titled } from "../support/http";
import { RunTasks, waitForStored } from "../support/stored-tasks";
import type { AcceptedTask } from "../../lib/task";

const BATCH = 300;
const CONCURRENCY = 20;

describe("the cluster under a batch of tasks", () => {
	let stack: Stack;
	let mongo: MongoClient;
	let probe: ServiceBroker;
	const batch = new RunTasks("batch");
	const tasks = () => mongo.db(stack.dbName).collection<TaskDocument>("tasks");

	beforeAll(async () => {
		stack = await connectToStack();
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
		// A node of our own that joins the cluster just to read its registry.
		probe = await joinBus(stack, "e2e-probe");
	});

	afterAll(async () => {
		await probe?.stop();
		// The batch would otherwise grow the developer's store by BATCH tasks on every run.
		if (mongo) await batch.remove(tasks());
		await mongo?.close();
	});

	it(`processes ${BATCH} tasks from both gateways with both worker roles, each exactly once`, async () => {
		const titles = Array.from({ length: BATCH }, (_, i) => batch.title(`#${i}`));
		const accepted = await inParallel(titles, CONCURRENCY, async (title, i) => {
			const response = await postTask(stack.gatewayUrl(i % 2 === 0 ? "flask" : "go"), titled(title));
			expect(response.status).toBe(202);
			return (await response.json()) as AcceptedTask;
		});
		const ids = accepted.map(task => task.id);
		expect(new Set(ids).size).toBe(BATCH);

		const stored = await waitForStored(tasks(), ids, 60_000);

		// Both roles compete for the one queue, so both take a share of a batch this size.
		expect(new Set(stored.map(task => task.processed_by))).toEqual(new Set(["worker-py", "worker-go"]));
		// RabbitMQ deals the messages round-robin over the consumers: every worker node takes part.
		const workerNodes = stack.nodes.filter(node => node.startsWith("worker-"));
		expect(new Set(stored.map(task => task.node_id))).toEqual(new Set(workerNodes));
		// A redelivery must not add a document under another id: the batch's titles map to its ids only.
		expect(await batch.stored(tasks())).toHaveLength(BATCH);
	}, 90_000);

	it("has every node of every role in the Moleculer registry, each with its role and a tasks store", async () => {
		const servicesByNode = await eventually("every stack node registered", async () => {
			const nodes = probe.registry.getNodeList({ onlyAvailable: true, withServices: true });
			const byId = new Map(nodes.map(node => [node.id, node.services.map(service => service.name as string)]));
			return stack.nodes.every(id => byId.has(id)) ? byId : undefined;
		});
		for (const id of stack.nodes) {
			const role = id.replace(/-\d+$/, "");
			expect(servicesByNode.get(id)).toEqual(expect.arrayContaining([role, "tasks"]));
		}
	});
});
