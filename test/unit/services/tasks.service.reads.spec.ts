import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { Long, type Document } from "bson";
import ApiFlaskService from "../../../services/api-flask.service";
import TasksService from "../../../services/tasks.service";
import { createDbServiceMixin } from "../../../mixins/db.mixin";
import { TaskQueueMiddleware } from "../../../middlewares/task-queue.middleware";
import { config } from "../../../lib/config";
import { READ_TIMEOUT_MS } from "../../../lib/store/read-shedding";
import { decodeCursor, type TaskPage } from "../../../lib/store/task-reads";
import type { ProcessedTask } from "../../../lib/task";
import { eventually } from "../../support/eventually";
import { FakeMongoServer } from "../../support/fake-mongo-server";
import { readJson, type ApiError } from "../../support/http";

/** Most of the read's timeout, less what passed before the store was asked. */
const BUDGET = {
	asymmetricMatch: (value: unknown) => typeof value === "number" && value > READ_TIMEOUT_MS * 0.6 && value <= READ_TIMEOUT_MS * 0.8,
	toAsymmetricMatcher: () => `a maxTimeMS within (${READ_TIMEOUT_MS * 0.6}, ${READ_TIMEOUT_MS * 0.8}]`,
};
const t = (ms: number) => new Date(Date.UTC(2026, 10, 29, 12, 0, 0, ms));
/** Newest first, as the index would return them. */
const STORED = [5, 4, 3, 2, 1].map(n => ({
	_id: `id-${n}`,
	title: `task ${n}`,
	source: "go",
	created_at: t(n),
	status: "processed",
	processed_by: "worker-go",
	processed_at: t(n + 10),
	node_id: "n1",
}));

type Store = "mongodb" | "ferretdb";

/** Answers like a MongoDB (or FerretDB) holding STORED; `stall` makes reads run out of time, `hold` keeps them waiting. */
function storeAnswers(store: Store, stall: { reads: boolean; hold: Promise<void> | null }) {
	return async (command: Document): Promise<Document | undefined> => {
		if (stall.hold && "find" in command) await stall.hold;
		if ("buildInfo" in command) return store === "ferretdb" ? { version: "7.0.77", ferretdbVersion: "v1.24.2", ok: 1 } : { version: "7.0.14", ok: 1 };
		if (stall.reads && ("find" in command || "aggregate" in command)) {
			return { ok: 0, code: 50, codeName: "MaxTimeMSExpired", errmsg: "operation exceeded time limit" };
		}
		if ("find" in command) {
			const after = (command.filter.created_at?.$lte as Date | undefined)?.getTime() ?? Infinity;
			const before = command.filter.$or?.[1]?._id?.$lt as string | undefined;
			const matching = command.filter._id
				? STORED.filter(doc => doc._id === command.filter._id)
				: STORED.filter(doc => doc.created_at.getTime() < after || (doc.created_at.getTime() === after && before !== undefined && doc._id < before));
			const batch = matching.slice(command.skip ?? 0).slice(0, command.limit);
			return { cursor: { firstBatch: batch, id: Long.ZERO, ns: "unitdb.tasks" }, ok: 1 };
		}
		if ("count" in command) return { n: STORED.length, ok: 1 };
		if ("aggregate" in command) return { cursor: { firstBatch: [{ _id: 1, n: STORED.length }], id: Long.ZERO, ns: "unitdb.tasks" }, ok: 1 };
		return undefined;
	};
}

async function startStore(store: Store) {
	const stall: { reads: boolean; hold: Promise<void> | null } = { reads: false, hold: null };
	const fake = new FakeMongoServer(storeAnswers(store, stall));
	const uri = await fake.start();
	const broker = new ServiceBroker({ nodeID: `reads-${store}`, logger: false, middlewares: [TaskQueueMiddleware()] });
	broker.createService({ ...TasksService, mixins: [createDbServiceMixin("tasks", { ...config, mongoUri: uri, dbName: "unitdb" })] } as ServiceSchema);
	broker.createService({ ...ApiFlaskService, settings: { ...ApiFlaskService.settings, port: 0 } } as ServiceSchema);
	await broker.start();
	const server = (broker.getLocalService("api-flask") as unknown as { server: Server }).server;
	return {
		fake,
		broker,
		stall,
		url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
		async stop() {
			await broker.stop();
			await fake.stop();
		},
	};
}

describe("tasks store reads: the commands that reach MongoDB", () => {
	let store: Awaited<ReturnType<typeof startStore>>;
	beforeEach(async () => {
		store = await startStore("mongodb");
	});
	afterEach(() => store.stop());

	it("creates the index of the list's sort at start, and drops the one it supersedes", () => {
		expect(store.fake.named("createIndexes")).toEqual([
			{ createIndexes: "tasks", indexes: [{ name: "created_at_-1__id_-1", key: { created_at: -1, _id: -1 } }], $db: "unitdb" },
		]);
		// The earlier single-field list index goes: one index less to write per task.
		expect(store.fake.named("dropIndexes")).toEqual([{ dropIndexes: "tasks", index: "created_at_-1", $db: "unitdb" }]);
	});

	it("lists the first page with one sorted, limited, bounded find and an estimated count", async () => {
		store.fake.commands.length = 0;
		const page = await readJson<TaskPage>(await fetch(`${store.url}/tasks?pageSize=2`));
		expect(store.fake.commands).toEqual([
			{ find: "tasks", filter: {}, sort: { created_at: -1, _id: -1 }, limit: 3, maxTimeMS: BUDGET, $db: "unitdb" },
			// Without a query, MongoDB answers `count` from the collection's metadata.
			{ count: "tasks", maxTimeMS: BUDGET, $db: "unitdb" },
		]);
		expect(page).toMatchObject({ total: 5, page: 1, pageSize: 2, totalPages: 3 });
		expect(page.rows.map(row => row.id)).toEqual(["id-5", "id-4"]);
		expect(page.rows[0]).toEqual({
			id: "id-5",
			title: "task 5",
			source: "go",
			created_at: t(5).toISOString(),
			status: "processed",
			processed_by: "worker-go",
			processed_at: t(15).toISOString(),
			node_id: "n1",
		});
		expect(decodeCursor(page.next ?? "")).toEqual({ createdAt: t(4), id: "id-4" });
	});

	it("follows the cursor with a range on the index, not a skip", async () => {
		const first = await readJson<TaskPage>(await fetch(`${store.url}/tasks?pageSize=2`));
		store.fake.commands.length = 0;
		const second = await readJson<TaskPage>(await fetch(`${store.url}/tasks?pageSize=2&after=${first.next}`));
		expect(store.fake.named("find")).toEqual([
			{
				find: "tasks",
				filter: { created_at: { $lte: t(4) }, $or: [{ created_at: { $lt: t(4) } }, { _id: { $lt: "id-4" } }] },
				sort: { created_at: -1, _id: -1 },
				limit: 3,
				maxTimeMS: BUDGET,
				$db: "unitdb",
			},
		]);
		expect(second).toMatchObject({ page: null, pageSize: 2 });
		expect(second.rows.map(row => row.id)).toEqual(["id-3", "id-2"]);
		const last = await readJson<TaskPage>(await fetch(`${store.url}/tasks?pageSize=2&after=${second.next}`));
		expect(last.rows.map(row => row.id)).toEqual(["id-1"]);
		expect(last.next).toBeNull();
	});

	it("keeps moleculer-db's numbered pages, by skip", async () => {
		store.fake.commands.length = 0;
		const page = await readJson<TaskPage>(await fetch(`${store.url}/tasks?page=2&pageSize=2`));
		expect(store.fake.named("find")[0]).toMatchObject({ filter: {}, skip: 2, limit: 3 });
		expect(page.rows.map(row => row.id)).toEqual(["id-3", "id-2"]);
	});

	it("filters an operator's list by field equality and counts its matches, bounded like every read", async () => {
		store.fake.commands.length = 0;
		const page = await store.broker.call<{ total: number }, object>("tasks.list", { query: { source: "go", id: "id-3" }, pageSize: 2 });
		expect(store.fake.commands).toEqual([
			{ find: "tasks", filter: { source: "go", _id: "id-3" }, sort: { created_at: -1, _id: -1 }, limit: 3, maxTimeMS: BUDGET, $db: "unitdb" },
			{
				aggregate: "tasks",
				pipeline: [{ $match: { source: "go", _id: "id-3" } }, { $group: { _id: 1, n: { $sum: 1 } } }],
				cursor: {},
				maxTimeMS: BUDGET,
				$db: "unitdb",
			},
		]);
		expect(page.total).toBe(5);
		// Only equality on known fields: an operator in a value never reaches the store.
		await expect(store.broker.call("tasks.list", { query: { title: { $ne: "" } } })).rejects.toMatchObject({ code: 422 });
		await expect(store.broker.call("tasks.list", { query: { $where: "1" } })).rejects.toMatchObject({ code: 422 });
	});

	it("gets one task with a single findOne by _id, and 404 when it is unknown", async () => {
		store.fake.commands.length = 0;
		const task = await readJson<ProcessedTask>(await fetch(`${store.url}/tasks/id-3`));
		expect(task).toMatchObject({ id: "id-3", title: "task 3" });
		const missing = await fetch(`${store.url}/tasks/nope`);
		expect(missing.status).toBe(404);
		expect(await readJson(missing)).toMatchObject({ name: "EntityNotFoundError", code: 404, data: { id: "nope" } });
		expect(store.fake.commands).toEqual([
			{ find: "tasks", filter: { _id: "id-3" }, limit: 1, singleBatch: true, maxTimeMS: BUDGET, $db: "unitdb" },
			{ find: "tasks", filter: { _id: "nope" }, limit: 1, singleBatch: true, maxTimeMS: BUDGET, $db: "unitdb" },
		]);
	});

	it("refuses a cursor it did not hand out with 422, before asking the store", async () => {
		store.fake.commands.length = 0;
		for (const after of ["garbage", encodeURIComponent(Buffer.from('["x","y"]').toString("base64url"))]) {
			const res = await fetch(`${store.url}/tasks?after=${after}`);
			expect(res.status).toBe(422);
			expect((await readJson<ApiError>(res)).data[0].field).toBe("after");
		}
		expect(store.fake.commands).toEqual([]);
	});

	it("answers a read the store stopped with 504 and Retry-After, sheds after a few, and probes again within seconds", async () => {
		store.stall.reads = true;
		const timedOut = await fetch(`${store.url}/tasks`);
		expect(timedOut.status).toBe(504);
		expect(timedOut.headers.get("retry-after")).toBe("5");
		// A server error's body names its type, not the store's budget (lib/http/public-errors.ts).
		const timedOutBody = await readJson(timedOut);
		expect(timedOutBody).toMatchObject({ name: "StoreReadTimeoutError", code: 504, type: "STORE_READ_TIMEOUT", requestId: expect.any(String) });
		expect(timedOutBody).not.toHaveProperty("data");
		// One timeout is no reason to refuse the next list; a few in a row open the circuit.
		for (let i = 0; i < 3; i++) expect((await fetch(`${store.url}/tasks`)).status).toBe(504);

		store.fake.commands.length = 0;
		const shed = await fetch(`${store.url}/tasks`);
		expect(shed.status).toBe(503);
		expect(shed.headers.get("retry-after")).toBe("5");
		expect(await readJson(shed)).toMatchObject({ name: "StoreReadsShedError", code: 503, type: "STORE_READS_SHED" });
		expect(store.fake.named("find")).toEqual([]);
		// Gets have a circuit of their own.
		expect((await fetch(`${store.url}/tasks/id-1`)).status).toBe(504);

		store.stall.reads = false;
		const probed = await eventually(
			"a list after the half-open probe",
			async () => ((await fetch(`${store.url}/tasks`)).status === 200 ? true : undefined),
			10_000,
		);
		expect(probed).toBe(true);
		expect(store.fake.named("find").length).toBeGreaterThan(0);
	}, 15_000);

	it("runs two lists at a time, queues twenty more and sheds the rest with 503 at once", async () => {
		let release = () => {};
		store.stall.hold = new Promise<void>(resolve => (release = resolve));
		const lists = Array.from({ length: 23 }, () => fetch(`${store.url}/tasks`));
		const shed = await Promise.race(lists);
		expect(shed.status).toBe(503);
		expect(shed.headers.get("retry-after")).toBe("1");
		expect(await readJson(shed)).toMatchObject({ name: "StoreReadsShedError", type: "STORE_READS_SHED" });
		expect(store.fake.named("find")).toHaveLength(2);
		release();
		const statuses = (await Promise.all(lists)).map(res => res.status).sort();
		expect(statuses).toEqual([...Array(22).fill(200), 503]);
	});
});

describe("tasks store reads on FerretDB", () => {
	it("leaves total out rather than have FerretDB count", async () => {
		const store = await startStore("ferretdb");
		try {
			store.fake.commands.length = 0;
			const page = await readJson<TaskPage>(await fetch(`${store.url}/tasks?pageSize=2`));
			expect(page).toMatchObject({ total: null, totalPages: null, page: 1, pageSize: 2 });
			expect(store.fake.named("aggregate")).toEqual([]);
			expect(store.fake.named("count")).toEqual([]);
		} finally {
			await store.stop();
		}
	});
});
