import { MongoClient } from "mongodb";
import type { ServiceBroker } from "moleculer";
import { stackCommand } from "../../scripts/stack-control";
import { connectToStack, gatewaysReady, joinBus, removeTestTasks, runTag, type Stack } from "../support/stack";
import { eventually } from "../support/eventually";
import { postTask, readJson, titled, type ApiError } from "../support/http";
import type { AcceptedTask } from "../../lib/task";

/** The gateways' rules through Nginx on the running local stack, and what the store offers the bus. */

describe("the gateways on the stack", () => {
	let stack: Stack;
	let mongo: MongoClient;
	const tag = runTag();

	beforeAll(async () => {
		stack = await connectToStack();
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
	});
	afterAll(() => removeTestTasks(mongo, stack, `^${tag} `));

	it.each(["flask", "go"] as const)(
		"api-%s answers a key of 201 characters with 400, a reused key with another body with 422, the same body with the first task",
		async gateway => {
			const url = stack.gatewayUrl(gateway);
			const tooLong = await postTask(url, titled(`${tag} long key`), { "Content-Type": "application/json", "Idempotency-Key": "k".repeat(201) });
			expect(tooLong.status).toBe(400);
			expect(await readJson<ApiError>(tooLong)).toMatchObject({ code: 400, type: "INVALID_IDEMPOTENCY_KEY" });

			const headers = { "Content-Type": "application/json", "Idempotency-Key": `${tag}-${gateway}` };
			const first = await postTask(url, titled(`${tag} first body`), headers);
			expect(first.status).toBe(202);
			const task = await readJson<AcceptedTask>(first);
			const other = await postTask(url, titled(`${tag} another body`), headers);
			expect(other.status).toBe(422);
			expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			const again = await postTask(url, titled(`${tag} first body`), headers);
			expect(again.status).toBe(202);
			expect(await readJson(again)).toEqual(task);
		},
	);

	it("refuses a key used through /flask with another body through /go (422) at once, and answers the same body there with the first task", async () => {
		const headers = { "Content-Type": "application/json", "Idempotency-Key": `${tag}-cross` };
		const first = await postTask(stack.gatewayUrl("flask"), titled(`${tag} cross first body`), headers);
		expect(first.status).toBe(202);
		const task = await readJson<AcceptedTask>(first);

		const other = await postTask(stack.gatewayUrl("go"), titled(`${tag} cross another body`), headers);
		expect(other.status).toBe(422);
		expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		const again = await postTask(stack.gatewayUrl("go"), titled(`${tag} cross first body`), headers);
		expect(again.status).toBe(202);
		expect(await readJson<AcceptedTask>(again)).toEqual(task);
		expect(again.headers.get("location")).toBe(`/go/tasks/${task.id}`);
	});

	it("given one key with two bodies through /flask and /go at the same moment, accepts one and refuses the other, and stores the one accepted", async () => {
		const keys = Array.from({ length: 20 }, (_, n) => `${tag}-race-${n}`);
		const races = await Promise.all(
			keys.map(async key => {
				const headers = { "Content-Type": "application/json", "Idempotency-Key": key };
				const answers = await Promise.all(
					(["flask", "go"] as const).map(gateway => postTask(stack.gatewayUrl(gateway), titled(`${tag} race ${key} via ${gateway}`), headers)),
				);
				const accepted = answers.find(res => res.status === 202);
				return { statuses: answers.map(res => res.status).sort(), accepted: accepted && (await readJson<AcceptedTask>(accepted)) };
			}),
		);
		expect(races.map(race => race.statuses)).toEqual(keys.map(() => [202, 422]));
		for (const { accepted } of races) {
			const stored = await eventually(`task ${accepted?.id} stored`, async () => {
				const res = await fetch(`${stack.gatewayUrl("go")}/tasks/${accepted?.id}`);
				return res.status === 200 ? readJson<AcceptedTask>(res) : undefined;
			});
			expect(stored.title).toBe(accepted?.title);
		}
	});

	it("after api-go restarts, answers a key used through /flask by its claim: another body 422, the same body the first answer", async () => {
		const headers = { "Content-Type": "application/json", "Idempotency-Key": `${tag}-restart` };
		const task = await readJson<AcceptedTask>(await postTask(stack.gatewayUrl("flask"), titled(`${tag} restart first body`), headers));
		await stackCommand("restart", "api-go-1");
		await gatewaysReady();

		const other = await postTask(stack.gatewayUrl("go"), titled(`${tag} restart another body`), headers);
		expect(other.status).toBe(422);
		expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		const again = await postTask(stack.gatewayUrl("go"), titled(`${tag} restart first body`), headers);
		expect(again.status).toBe(202);
		expect(await readJson<AcceptedTask>(again)).toEqual(task);
	}, 120_000);

	it("refuses a page beyond the reach of page numbers, pointing to ?after=", async () => {
		const res = await fetch(`${stack.gatewayUrl("go")}/tasks?page=100000&pageSize=100`);
		expect(res.status).toBe(422);
		const error = await readJson<ApiError & { data: { field: string; message: string; type: string }[] }>(res);
		expect(error.data[0]).toMatchObject({ field: "page", type: "pageReach" });
		expect(error.data[0].message).toContain("?after=");
	});

	describe("a node that joins the bus", () => {
		let probe: ServiceBroker;

		beforeAll(async () => {
			probe = await joinBus(stack, "security-probe");
			await probe.waitForServices("tasks", 20_000);
		});
		afterAll(() => probe?.stop());

		it.each(["tasks.find", "tasks.count"])("cannot call %s with a raw MongoDB query", async action => {
			await expect(probe.call(action, { query: { title: { $regex: ".*" } } })).rejects.toMatchObject({ name: "ServiceNotFoundError" });
		});

		it("still reads through tasks.list, whose filter takes equality on named fields only", async () => {
			await expect(probe.call("tasks.list", { pageSize: 1 })).resolves.toMatchObject({ pageSize: 1 });
			await expect(probe.call("tasks.list", { query: { title: { $regex: ".*" } } })).rejects.toMatchObject({ code: 422 });
		});
	});
});
