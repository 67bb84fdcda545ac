import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { QueueUnavailableError } from "../../../lib/errors";
import { READ_TIMEOUT_MS } from "../../../lib/store/read-shedding";
import type { TaskPage } from "../../../lib/store/task-reads";
import type { TaskStore } from "../../../lib/store/task-store";
import type { AcceptedTask, ProcessedTask } from "../../../lib/task";
import { postTask, readJson, type ApiError } from "../../support/http";
import { startEmbeddedCluster, type EmbeddedCluster } from "../../support/embedded-cluster";
import { eventually } from "../../support/eventually";
import { config, loadConfig } from "../../../lib/config";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe("task gateways (api-flask, api-go)", () => {
	let cluster: EmbeddedCluster;

	beforeAll(async () => {
		cluster = await startEmbeddedCluster();
	});
	afterAll(() => cluster.stop());
	afterEach(() => jest.restoreAllMocks());

	async function listTitles(baseUrl: string): Promise<string[]> {
		const page = await readJson<TaskPage>(await fetch(`${baseUrl}/tasks?pageSize=100`));
		return page.rows.map(row => row.title);
	}

	it("accepts a task with 202, a trimmed title, a UUID and a Location", async () => {
		const res = await postTask(cluster.flaskUrl, JSON.stringify({ title: "  Test task from Flask  " }));
		expect(res.status).toBe(202);
		const body = await readJson<AcceptedTask>(res);
		expect(body).toMatchObject({ title: "Test task from Flask", status: "queued", source: "flask" });
		expect(body.id).toMatch(UUID);
		expect(res.headers.get("location")).toBe(`/tasks/${body.id}`);
	});

	it("prefixes Location with the path Nginx mounts the gateway on", async () => {
		const res = await postTask(cluster.goUrl, JSON.stringify({ title: "behind nginx" }), {
			"Content-Type": "application/json",
			"X-Forwarded-Prefix": "/go",
		});
		const body = await readJson<AcceptedTask>(res);
		expect(body.source).toBe("go");
		expect(res.headers.get("location")).toBe(`/go/tasks/${body.id}`);
	});

	it("listens on loopback unless BIND_ADDRESS says otherwise", () => {
		expect(loadConfig({}).bindAddress).toBe("127.0.0.1");
		expect(loadConfig({ BIND_ADDRESS: "0.0.0.0" }).bindAddress).toBe("0.0.0.0");
		for (const gateway of ["api-flask", "api-go"]) {
			const { server } = cluster.broker.getLocalService(gateway) as unknown as { server: Server };
			expect((server.address() as AddressInfo).address).toBe(config.bindAddress);
		}
	});

	it("lists a task posted to either gateway on both, newest first", async () => {
		await postTask(cluster.flaskUrl, JSON.stringify({ title: "first" }));
		await new Promise(resolve => setTimeout(resolve, 5));
		await postTask(cluster.goUrl, JSON.stringify({ title: "second" }));
		for (const url of [cluster.flaskUrl, cluster.goUrl]) {
			const titles = await eventually("both titles listed", async () => {
				const all = await listTitles(url);
				return all.includes("first") && all.includes("second") ? all : undefined;
			});
			expect(titles.indexOf("second")).toBeLessThan(titles.indexOf("first"));
		}
	});

	it("pages the list in moleculer-db's shape", async () => {
		const res = await fetch(`${cluster.flaskUrl}/tasks?page=1&pageSize=1`);
		expect(res.status).toBe(200);
		const page = await readJson<TaskPage>(res);
		expect(Object.keys(page).sort()).toEqual(["next", "page", "pageSize", "rows", "total", "totalPages"]);
		expect(page).toMatchObject({ page: 1, pageSize: 1 });
		expect(page.rows).toHaveLength(1);
		expect(page.totalPages).toBe(page.total);
	});

	it.each([
		["pageSize above 100", "pageSize=101", "pageSize"],
		["a page that is not a number", "page=abc", "page"],
	])("refuses %s with 422", async (_case, query, field) => {
		const res = await fetch(`${cluster.flaskUrl}/tasks?${query}`);
		expect(res.status).toBe(422);
		expect((await readJson<ApiError>(res)).data[0].field).toBe(field);
	});

	it("returns one stored task, and 404 for an unknown id", async () => {
		const { id } = await readJson<AcceptedTask>(await postTask(cluster.flaskUrl, JSON.stringify({ title: "find me" })));
		const task = await eventually("the task stored", async () => {
			const res = await fetch(`${cluster.goUrl}/tasks/${id}`);
			return res.status === 200 ? readJson<ProcessedTask>(res) : undefined;
		});
		expect(task).toMatchObject({ id, title: "find me", status: "processed", source: "flask" });

		const missing = await fetch(`${cluster.goUrl}/tasks/00000000-0000-4000-8000-000000000000`);
		expect(missing.status).toBe(404);
		expect((await readJson<ApiError>(missing)).name).toBe("EntityNotFoundError");
	});

	describe("bad input gets a JSON error and queues nothing", () => {
		const cases: [string, string, Record<string, string>, number, string | undefined][] = [
			["broken JSON", '{"title": ', { "Content-Type": "application/json" }, 400, undefined],
			["a JSON string", '"title"', { "Content-Type": "application/json" }, 400, undefined],
			["no title", "{}", { "Content-Type": "application/json" }, 422, "title"],
			["an empty title", '{"title": "   "}', { "Content-Type": "application/json" }, 422, "title"],
			["a title of 201 characters", JSON.stringify({ title: "x".repeat(201) }), { "Content-Type": "application/json" }, 422, "title"],
			["a number as title", '{"title": 42}', { "Content-Type": "application/json" }, 422, "title"],
			["a control character", JSON.stringify({ title: "a\u0007b" }), { "Content-Type": "application/json" }, 422, "title"],
			["an unknown field", '{"title": "x", "priority": 1}', { "Content-Type": "application/json" }, 422, undefined],
			["a __proto__ key", '{"title": "x", "__proto__": {"admin": true}}', { "Content-Type": "application/json" }, 422, "__proto__"],
			["a constructor key", '{"title": "x", "constructor": {}}', { "Content-Type": "application/json" }, 422, "constructor"],
			["text/plain", '{"title": "x"}', { "Content-Type": "text/plain" }, 415, undefined],
			["no content type", '{"title": "x"}', {}, 415, undefined],
			["a body over the limit", JSON.stringify({ title: "x".repeat(20_000) }), { "Content-Type": "application/json" }, 413, undefined],
			["an unpaired surrogate", '{"title": "a\\ud800b"}', { "Content-Type": "application/json" }, 422, "title"],
			["a title nested thousands deep", `{"title": ${"[".repeat(5000)}${"]".repeat(5000)}}`, { "Content-Type": "application/json" }, 422, "title"],
		];

		it.each(cases)("%s", async (_case, body, headers, status, field) => {
			const before = await cluster.queue.depth();
			const published = jest.spyOn(cluster.queue, "publish");
			const res = await postTask(cluster.flaskUrl, body, headers);
			expect(res.status).toBe(status);
			expect(res.headers.get("content-type")).toMatch(/^application\/json/);
			const error = await readJson<ApiError>(res);
			expect(error.code).toBe(status);
			if (field) expect(error.data.map((problem: { field: string }) => problem.field)).toContain(field);
			expect(published).not.toHaveBeenCalled();
			expect((await cluster.queue.depth()).messages).toBe(before.messages);
		});
	});

	it.each([
		["a title in the query string", "POST", "/tasks?title=from-the-query", { "Content-Type": "application/json" }, "{}", 422],
		[
			"invalid UTF-8",
			"POST",
			"/tasks",
			{ "Content-Type": "application/json" },
			Buffer.concat([Buffer.from('{"title": "a'), Buffer.from([0xff]), Buffer.from('b"}')]),
			400,
		],
		["a body that fails to decompress", "POST", "/tasks", { "Content-Type": "application/json", "Content-Encoding": "gzip" }, '{"title": "x"}', 400],
		[
			"a CORS preflight for POST",
			"OPTIONS",
			"/tasks",
			{ "Content-Type": "application/json", "Access-Control-Request-Method": "POST" },
			'{"title": "x"}',
			405,
		],
	])("refuses %s with a JSON error and queues nothing", async (_case, method, path, headers, body, status) => {
		const published = jest.spyOn(cluster.queue, "publish");
		const res = await fetch(`${cluster.flaskUrl}${path}`, { method, headers, body });
		expect(res.status).toBe(status);
		expect((await readJson<ApiError>(res)).code).toBe(status);
		expect(published).not.toHaveBeenCalled();
	});

	describe("the JSON body reader", () => {
		// Content-Encoding: identity takes body-parser's general path; without it the plain one.
		const throughBodyParser = { "Content-Type": "application/json", "Content-Encoding": "identity" };
		const plain = { "Content-Type": "application/json" };

		it.each([
			["broken JSON", '{"title": '],
			["a JSON string", '"title"'],
			["invalid UTF-8", Buffer.concat([Buffer.from('{"title": "a'), Buffer.from([0xff]), Buffer.from('b"}')])],
			["JSON after a byte-order mark, with a bad tail", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"title": "x"')])],
		])("answers %s on the plain path exactly as body-parser does", async (_case, body) => {
			const viaBodyParser = await postTask(cluster.flaskUrl, body, throughBodyParser);
			const viaPlainPath = await postTask(cluster.flaskUrl, body, plain);
			expect(viaPlainPath.status).toBe(viaBodyParser.status);
			expect(await readJson(viaPlainPath)).toEqual(await readJson(viaBodyParser));
		});

		it.each([
			["gzip", { ...plain, "Content-Encoding": "gzip" }, gzipSync('{"title": "gzipped"}')],
			["a byte-order mark", plain, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"title": "after a BOM"}')])],
			["charset=UTF-8", { "Content-Type": "application/json; charset=UTF-8" }, '{"title": "with a charset"}'],
		])("accepts a body with %s", async (_case, headers, body) => {
			const res = await postTask(cluster.flaskUrl, body, headers);
			expect(res.status).toBe(202);
		});
	});

	it("answers 503 with Retry-After when the queue cannot confirm, never 202", async () => {
		jest.spyOn(cluster.queue, "publish").mockRejectedValue(new QueueUnavailableError("RabbitMQ is not connected"));
		const res = await postTask(cluster.flaskUrl, JSON.stringify({ title: "while broker is down" }));
		expect(res.status).toBe(503);
		expect(res.headers.get("retry-after")).toBe("1");
		expect(await readJson<ApiError>(res)).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
	});

	it.each([true, false])("with requestLogging %s logs single requests: %s", async logged => {
		const lines: string[] = [];
		// The broker's logger keeps debug lines either way: whether one is written is the gateway's doing.
		const logger = { type: "Console", options: { formatter: (_level: string, args: unknown[]) => [args.join(" ")] } };
		const logging = await startEmbeddedCluster(`log-${logged}`, null, { broker: { logger, logLevel: "debug" }, gateway: { requestLogging: logged } });
		const write = jest.spyOn(console, "log").mockImplementation(line => void lines.push(String(line)));
		try {
			await postTask(logging.flaskUrl, JSON.stringify({ title: "logged or not" }));
		} finally {
			write.mockRestore();
			await logging.stop();
		}
		expect(lines.some(line => line.includes("=> POST /tasks"))).toBe(logged);
	});

	describe("with a REQUEST_TIMEOUT_MS shorter than the work", () => {
		let timed: EmbeddedCluster;
		beforeAll(async () => {
			timed = await startEmbeddedCluster("timed-node", null, { broker: { requestTimeout: 50 } });
		});
		afterAll(() => timed.stop());

		it("lets a slow publish run to its own deadline and answers 202", async () => {
			const publish = timed.queue.publish.bind(timed.queue);
			jest.spyOn(timed.queue, "publish").mockImplementation(async task => {
				await new Promise(resolve => setTimeout(resolve, 150));
				return publish(task);
			});
			const res = await postTask(timed.flaskUrl, JSON.stringify({ title: "confirmed late" }));
			expect(res.status).toBe(202);
		});

		it(
			"gives a read the store's own timeout, and answers 504 STORE_READ_TIMEOUT when it runs out",
			async () => {
				const store = (timed.broker.getLocalService("tasks") as unknown as { store: TaskStore }).store;
				const slow = jest.spyOn(store, "estimatedTotal").mockImplementation(() => new Promise(resolve => setTimeout(() => resolve(0), 150)));
				expect((await fetch(`${timed.goUrl}/tasks`)).status).toBe(200);
				slow.mockImplementation(() => new Promise(resolve => setTimeout(() => resolve(0), READ_TIMEOUT_MS + 500)));
				const res = await fetch(`${timed.goUrl}/tasks`);
				expect(res.status).toBe(504);
				expect(res.headers.get("retry-after")).toBe("5");
				expect(await readJson<ApiError>(res)).toMatchObject({ name: "StoreReadTimeoutError", type: "STORE_READ_TIMEOUT" });
			},
			READ_TIMEOUT_MS + 5000,
		);
	});

	it("reports not ready while the queue is disconnected", async () => {
		expect((await fetch(`${cluster.flaskUrl}/health/ready`)).status).toBe(200);
		jest.spyOn(cluster.queue, "isConnected").mockReturnValue(false);
		const res = await fetch(`${cluster.flaskUrl}/health/ready`);
		expect(res.status).toBe(503);
		expect(res.headers.get("retry-after")).toBe("1");
		expect((await fetch(`${cluster.flaskUrl}/health/live`)).status).toBe(200);
	});

	it("maps one Idempotency-Key to one task id on every gateway", async () => {
		const headers = { "Content-Type": "application/json", "Idempotency-Key": "retry-elsewhere" };
		const viaFlask = await readJson<AcceptedTask>(await postTask(cluster.flaskUrl, JSON.stringify({ title: "retried" }), headers));
		const viaGo = await readJson<AcceptedTask>(await postTask(cluster.goUrl, JSON.stringify({ title: "retried" }), headers));
		expect(viaGo.id).toBe(viaFlask.id);
		await eventually("the retried task listed", async () => ((await listTitles(cluster.flaskUrl)).includes("retried") ? true : undefined));
		await new Promise(resolve => setTimeout(resolve, 50));
		expect((await listTitles(cluster.flaskUrl)).filter(title => title === "retried")).toHaveLength(1);
	});
});
