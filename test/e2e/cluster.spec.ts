import { MongoClient } from "mongodb";
import { ServiceBroker } from "moleculer";
import type { TaskDocument } from "../../lib/task";
import { connectToStack, inParallel, runTag, type Stack } from "../support/stack";
import { eventually } from "../support/eventually";
import { postTask, titled } from "../support/http";
import { createdSince, findByIds, removeCreatedSince } from "../support/stored-tasks";
import type { AcceptedTask } from "../../lib/task";

const BATCH = 300;
const CONCURRENCY = 20;

describe("the cluster under a batch of tasks", () => {
	let stack: Stack;
	let mongo: MongoClient;
	let probe: ServiceBroker;
	const tag = runTag();
	// Tasks created from here on are this run's; the store may hold millions of others.
	const since = new Date(Date.now() - 1000);

	beforeAll(async () => {
		stack = await connectToStack();
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
		// A node of our own that joins the cluster just to read its registry.
		probe = new ServiceBroker({
			namespace: stack.namespace,
			nodeID: `e2e-probe-${process.pid}`,
			transporter: { type: "AMQP", options: { url: stack.rabbitUrl } },
			logger: false,
		});
		await probe.start();
	});

	afterAll(async () => {
		await probe?.stop();
		// The batch would otherwise grow the developer's store by BATCH tasks on every run.
		if (mongo) await removeCreatedSince(mongo.db(stack.dbName).collection<TaskDocument>("tasks"), since, `${tag} batch `);
		await mongo?.close();
	});

	it(`processes ${BATCH} tasks from both gateways with both worker roles, each exactly once`, async () => {
		const titles = Array.from({ length: BATCH }, (_, i) => `${tag} batch #${i}`);
		const accepted = await inParallel(titles, CONCURRENCY, async (title, i) => {
			const response = await postTask(stack.gatewayUrl(i % 2 === 0 ? "flask" : "go"), titled(title));
			expect(response.status).toBe(202);
			return (await response.json()) as AcceptedTask;
		});
		const ids = accepted.map(task => task.id);
		expect(new Set(ids).size).toBe(BATCH);

		const tasks = mongo.db(stack.dbName).collection<TaskDocument>("tasks");
		const stored = await eventually(
			`${BATCH} tasks stored`,
			async () => {
				const found = await findByIds(tasks, ids);
				return found.length === BATCH ? found : undefined;
			},
			60_000,
		);

		// Both roles compete for the one queue, so both take a share of a batch this size.
		expect(new Set(stored.map(task => task.processed_by))).toEqual(new Set(["worker-py", "worker-go"]));
		// RabbitMQ deals the messages round-robin over the consumers: every worker node takes part.
		const workerNodes = stack.nodes.filter(node => node.startsWith("worker-"));
		expect(new Set(stored.map(task => task.node_id))).toEqual(new Set(workerNodes));
		// A redelivery must not add a document under another id: the batch's titles map to its ids only.
		expect((await createdSince(tasks, since)).filter(task => task.title.startsWith(`${tag} batch `))).toHaveLength(BATCH);
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
