import { once } from "node:events";
import path from "node:path";
import { ObjectId } from "mongodb";
import { spawnTracked } from "../support/child-processes";
import { TEST_MONGO_URI, TestDatabase } from "../support/test-database";

/**
 * moleculer-db-adapter-mongo on the project's mongodb 6 driver (package.json's override and
 * lib/store/mongo-adapter.ts), through moleculer-db's own actions, against the wire server.
 */
describe("moleculer-db's Mongo adapter on the mongodb 6 driver", () => {
	const store = new TestDatabase();
	const { broker } = store;

	beforeAll(() => store.start({ name: "items" }, "items"));
	afterAll(() => store.stop());

	it("creates, gets, updates, lists, counts and removes through moleculer-db's actions", async () => {
		const created = await broker.call<{ _id: string; name: string }, object>("items.create", { name: "first" });
		// The driver's ObjectId, handed out as moleculer-db hands it out: a hex string.
		expect(created).toEqual({ _id: expect.stringMatching(/^[0-9a-f]{24}$/), name: "first" });
		const stored = await store.db.collection("items").findOne({ _id: new ObjectId(created._id) });
		expect(stored).toEqual({ _id: new ObjectId(created._id), name: "first" });

		await broker.call("items.insert", { entities: [{ name: "second" }, { name: "third" }] });
		expect(await broker.call("items.get", { id: created._id })).toEqual(created);
		expect(await broker.call("items.update", { id: created._id, name: "renamed" })).toEqual({ _id: created._id, name: "renamed" });
		const page = await broker.call<{ rows: { name: string }[]; total: number }, object>("items.list", { sort: "name" });
		expect(page.rows.map(row => row.name)).toEqual(["renamed", "second", "third"]);
		expect(page.total).toBe(3);
		expect(await broker.call("items.count", { query: { name: "second" } })).toBe(1);

		expect(await broker.call("items.remove", { id: created._id })).toEqual({ _id: created._id, name: "renamed" });
		await expect(broker.call("items.get", { id: created._id })).rejects.toMatchObject({ code: 404 });
	});

	it("starts a node on the store without a warning", async () => {
		const node = spawnTracked(process.execPath, ["--import", "tsx", path.join(__dirname, "fixtures/tasks-node.ts"), TEST_MONGO_URI, store.name], {
			stdio: ["ignore", "pipe", "pipe"],
		});
		let stdout = "";
		let stderr = "";
		node.stdout?.on("data", chunk => (stdout += chunk));
		node.stderr?.on("data", chunk => (stderr += chunk));
		const [code] = await once(node, "exit");
		expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: "listed\n", stderr: "" });
	});
});
