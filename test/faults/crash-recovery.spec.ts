import { MongoClient } from "mongodb";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import { publishReport, seconds, textTable } from "../support/fault-report";
import { postTask, titled } from "../support/http";
import { gatewaysReady, removeTestTasks, runTag, type Stack } from "../support/stack";
import { STACK, stackNodes, type StackNode } from "../../scripts/stack-control";

/**
 * A node that crashes comes back by itself, as compose brings a container back: each node here
 * gets a raw SIGKILL (as the kernel's OOM killer would send it; nothing goes through the stack's
 * commands), and must serve again within 5 s, in a new process, under the same node id.
 */

const BACK_WITHIN_MS = 5000;
const TAG = runTag();
/** Each node's time from its SIGKILL to its first task stored or accepted, for the report. */
const recoveries: string[][] = [];

/** The running node `id`, as process-compose reports it. */
async function node(id: string): Promise<StackNode | undefined> {
	return (await stackNodes()).find(candidate => candidate.id === id);
}

/** SIGKILLs the node's process; resolves with when, and the node as it was. */
async function crash(id: string): Promise<{ killedAt: number; before: StackNode }> {
	const before = await node(id);
	if (!before) throw new Error(`${id} does not run`);
	process.kill(before.pid, "SIGKILL");
	return { killedAt: Date.now(), before };
}

/** Calls `attempt` every 100 ms until it returns true; resolves with the time it first did, or throws after `timeoutMs`. */
async function firstSuccess(what: string, attempt: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		if (await attempt().catch(() => false)) return Date.now();
		await sleep(100);
	}
	throw new Error(`${what}: not within ${timeoutMs} ms`);
}

describe("a SIGKILLed node is back without a command", () => {
	let stack: Stack;
	let mongo: MongoClient;

	beforeAll(async () => {
		stack = await gatewaysReady();
		mongo = await MongoClient.connect(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
	});

	afterAll(async () => {
		publishReport(textTable(["SIGKILLed node", "back (first task stored or accepted)"], recoveries), path.join(STACK, "crash-recovery-report.txt"));
		await removeTestTasks(mongo, stack, `^${TAG} `);
	});

	it.each(["worker-py-1", "worker-go-1"])("%s consumes task_queue again within 5 s", async id => {
		const tasks = mongo.db(stack.dbName).collection<{ title: string; node_id: string }>("tasks");
		const { killedAt, before } = await crash(id);
		let sent = 0;
		// Tasks keep coming, through both gateways; the first one the new process stores shows it consumes.
		const storedByNode = await firstSuccess(`a task stored by ${id}`, async () => {
			const gateway = stack.gatewayUrl(sent % 2 ? "go" : "flask");
			await postTask(gateway, titled(`${TAG} ${id} ${sent++}`));
			return (await tasks.countDocuments({ title: { $regex: `^${TAG} ${id} ` }, node_id: id })) > 0;
		});
		const after = await node(id);
		recoveries.push([id, seconds(storedByNode - killedAt)]);

		expect(storedByNode - killedAt).toBeLessThan(BACK_WITHIN_MS);
		expect(after).toMatchObject({ id, role: before.role, process: before.process });
		expect(after?.pid).not.toBe(before.pid);
	});

	it("api-flask-1 accepts tasks again within 5 s", async () => {
		const direct = `http://127.0.0.1:${stack.env.FLASK_PORT}`;
		const { killedAt, before } = await crash("api-flask-1");
		const accepted = await firstSuccess("a 202 from api-flask-1", async () => (await postTask(direct, titled(`${TAG} api-flask-1`))).status === 202);
		const after = await node("api-flask-1");
		recoveries.push(["api-flask-1", seconds(accepted - killedAt)]);

		expect(accepted - killedAt).toBeLessThan(BACK_WITHIN_MS);
		expect(after).toMatchObject({ id: "api-flask-1", role: "api-flask", process: before.process });
		expect(after?.pid).not.toBe(before.pid);
	});
});
