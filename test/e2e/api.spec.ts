import { MongoClient } from "mongodb";
import type { TaskPage } from "../../lib/store/task-reads";
import type { TaskDocument } from "../../lib/task";
import { connectToStack, runTag, type Stack } from "../support/stack";
import { eventually } from "../support/eventually";
import { postTask, titled } from "../support/http";
import { findByIds } from "../support/stored-tasks";
import type { AcceptedTask } from "../../lib/task";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const GATEWAYS = ["flask", "go"] as const;
type Gateway = (typeof GATEWAYS)[number];

interface Posted {
	title: string;
	status: number;
	location: string | null;
	task: AcceptedTask;
}

describe("the task API through Nginx", () => {
	let stack: Stack;
	let mongo: MongoClient;
	const posted = {} as Record<Gateway, Posted>;

	beforeAll(async () => {
		stack = await connectToStack();
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
		const tag = runTag();
		for (const gateway of GATEWAYS) {
			const title = `${tag} via ${gateway}`;
			const response = await postTask(stack.gatewayUrl(gateway), titled(title));
			posted[gateway] = { title, status: response.status, location: response.headers.get("location"), task: (await response.json()) as AcceptedTask };
		}
	});

	afterAll(() => mongo?.close());

	/** Whether a gateway's list (newest first) holds the task, looking only at pages as new as it. */
	async function isListed(gateway: Gateway, task: AcceptedTask): Promise<boolean> {
		// Paged by cursor: `total` is null on FerretDB, which would have to scan to count.
		for (let after = ""; ;) {
			const response = await fetch(`${stack.baseUrl}/${gateway}/tasks?pageSize=100${after}`);
			expect(response.status).toBe(200);
			const { rows, next } = (await response.json()) as TaskPage;
			if (rows.some(row => row.id === task.id)) return true;
			if (next === null || rows.length === 0 || rows[rows.length - 1].created_at < task.created_at) return false;
			after = `&after=${next}`;
		}
	}

	it.each(GATEWAYS)("POST /%s/tasks answers 202 with the queued task and its Location", gateway => {
		const { title, status, location, task } = posted[gateway];
		expect(status).toBe(202);
		expect(task).toMatchObject({ title, source: gateway, status: "queued" });
		expect(task.id).toMatch(UUID);
		// The gateway learns its public prefix from Nginx's X-Forwarded-Prefix.
		expect(location).toBe(`/${gateway}/tasks/${task.id}`);
	});

	it.each(GATEWAYS)("GET /%s/tasks lists the tasks of both gateways once processed", async gateway => {
		for (const { task } of Object.values(posted)) {
			await eventually(`task ${task.id} in GET /${gateway}/tasks`, async () => ((await isListed(gateway, task)) ? true : undefined));
		}
	});

	it.each(GATEWAYS)("the Location of a task from /%s/ answers the processed task", async gateway => {
		const { location, task } = posted[gateway];
		const response = await eventually(`GET ${location}`, async () => {
			const candidate = await fetch(`${stack.baseUrl}${location}`);
			return candidate.status === 404 ? undefined : candidate;
		});
		expect(response.status).toBe(200);
		expect(await response.json()).toMatchObject({ id: task.id, title: task.title, source: gateway, status: "processed" });
		expect((await fetch(`${stack.baseUrl}/${gateway}/tasks/no-such-task`)).status).toBe(404);
	});

	it("stores each task in MongoDB (FerretDB locally) with the SPEC's fields", async () => {
		const ids = Object.values(posted).map(({ task }) => task.id);
		const collection = mongo.db(stack.dbName).collection<TaskDocument>("tasks");
		const documents = await eventually("both tasks stored", async () => {
			const found = await findByIds(collection, ids);
			return found.length === ids.length ? found : undefined;
		});
		for (const document of documents) {
			const { task } = Object.values(posted).find(({ task }) => task.id === document._id)!;
			expect(Object.keys(document).sort()).toEqual(["_id", "created_at", "node_id", "processed_at", "processed_by", "source", "status", "title"]);
			expect(document).toMatchObject({
				title: task.title,
				source: task.source,
				created_at: new Date(task.created_at),
				status: "processed",
				processed_by: expect.stringMatching(/^worker-(py|go)$/),
				processed_at: expect.any(Date),
			});
			expect(stack.nodes).toContain(document.node_id);
			expect(stack.roleOf(document.node_id)).toBe(document.processed_by);
		}
	});

	it("refuses bad input with the gateways' JSON errors, Nginx's 413 included", async () => {
		const post = (body: string, contentType = "application/json") =>
			fetch(`${stack.baseUrl}/flask/tasks`, { method: "POST", headers: { "Content-Type": contentType }, body });
		const cases: [Response, number][] = [
			[await post('{"title": '), 400],
			[await post('{"title": "   "}'), 422],
			[await post("title=x", "text/plain"), 415],
			[await post(JSON.stringify({ title: "x".repeat(20_000) })), 413],
		];
		for (const [response, status] of cases) {
			expect(response.status).toBe(status);
			const error = (await response.json()) as { data?: unknown };
			expect(error).toMatchObject({ code: status, name: expect.any(String), message: expect.any(String) });
			if (status === 422) expect(error.data).toEqual([expect.objectContaining({ field: "title" })]);
		}
	});
});
