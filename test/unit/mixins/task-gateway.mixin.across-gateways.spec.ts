import type { Context, ServiceBroker, ServiceSchema } from "moleculer";
import { taskIdOfKey, type FirstAnswer } from "../../../lib/http/idempotency";
import type { TaskStore } from "../../../lib/store/task-store";
import type { AcceptedTask, ProcessedTask } from "../../../lib/task";
import { KEY_ACCEPTED_EVENT } from "../../../mixins/task-gateway.mixin";
import ApiFlaskService from "../../../services/api-flask.service";
import ApiGoService from "../../../services/api-go.service";
import TasksService from "../../../services/tasks.service";
import WorkerPyService from "../../../services/worker-py.service";
import { startEmbeddedCluster } from "../../support/embedded-cluster";
import { eventually } from "../../support/eventually";
import { FakeTransporterCluster, type GatewayNode } from "../../support/fake-transporter-cluster";
import { postTask, readJson, titled, type ApiError } from "../../support/http";

/**
 * The Idempotency-Key across gateways (issue 26): two gateway nodes and a store node on
 * Moleculer's Fake transporter, sharing one task queue, as the cluster's nodes share RabbitMQ.
 */

const keyed = (key: string) => ({ "Content-Type": "application/json", "Idempotency-Key": key });

describe("Idempotency-Key across gateways", () => {
	const cluster = new FakeTransporterCluster(`idempotency-${process.pid}`);
	/** Keys the go node has heard of, from any gateway's broadcast. */
	const heardOnGoNode = new Set<string>();
	const keyProbe: ServiceSchema = {
		name: "key-probe",
		events: {
			[KEY_ACCEPTED_EVENT](ctx: Context<{ key: string }>) {
				heardOnGoNode.add(ctx.params.key);
			},
		},
	};
	let storeNode: ServiceBroker;
	let store: TaskStore;
	let flask: GatewayNode;
	let go: GatewayNode;

	beforeAll(async () => {
		storeNode = await cluster.startNode("store-node", broker => broker.createService(TasksService));
		store = (storeNode.getLocalService("tasks") as unknown as { store: TaskStore }).store;
		flask = await cluster.startGateway("flask-node", ApiFlaskService);
		go = await cluster.startGateway("go-node", ApiGoService, { keyLookupTimeoutMs: 200 }, broker => broker.createService(keyProbe));
		// A gateway broadcasts to the listeners it has discovered.
		await flask.broker.waitForServices(["api-go", "key-probe"]);
		await go.broker.waitForServices(["api-flask"]);
	});
	afterAll(() => cluster.stop());
	afterEach(() => jest.restoreAllMocks());

	const storedTask = (id: string) =>
		eventually(`task ${id} stored`, () => storeNode.call<ProcessedTask, { id: string }>("tasks.get", { id }).catch(() => undefined));

	describe("while the task is still queued (no worker yet)", () => {
		it("refuses the key with another body through the other gateway (422), queueing nothing, without asking the store", async () => {
			const first = await postTask(flask.url, titled("the first body"), keyed("cross-1"));
			expect(first.status).toBe(202);
			await eventually("the go node told of the key", async () => (heardOnGoNode.has("cross-1") ? true : undefined));
			const published = jest.spyOn(cluster.queue, "publish");
			const lookedUp = jest.spyOn(store, "findTask");

			const other = await postTask(go.url, titled("another body"), keyed("cross-1"));
			expect(other.status).toBe(422);
			expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			expect(published).not.toHaveBeenCalled();
			expect(lookedUp).not.toHaveBeenCalled();
			expect((await cluster.queue.depth()).messages).toBe(1);
		});

		it("answers the same body through the other gateway with the first answer: same id, created_at and source", async () => {
			const first = await readJson<AcceptedTask>(await postTask(flask.url, titled("retried elsewhere"), keyed("cross-2")));
			await eventually("the go node told of the key", async () => (heardOnGoNode.has("cross-2") ? true : undefined));
			const published = jest.spyOn(cluster.queue, "publish");

			const again = await postTask(go.url, titled("retried elsewhere"), keyed("cross-2"));
			expect(again.status).toBe(202);
			expect(again.headers.get("location")).toBe(`/tasks/${first.id}`);
			expect(await readJson(again)).toEqual({ ...first, source: "flask", status: "queued" });
			expect(published).not.toHaveBeenCalled();
		});

		it("accepts a key the store has no task for, with the id the key names", async () => {
			const published = jest.spyOn(cluster.queue, "publish");
			const res = await postTask(go.url, titled("a new key"), keyed("never-seen"));
			expect(res.status).toBe(202);
			expect(await readJson<AcceptedTask>(res)).toMatchObject({ id: taskIdOfKey("never-seen"), source: "go", status: "queued" });
			expect(published).toHaveBeenCalledTimes(1);
		});

		it.each([
			["fails", (): Promise<null> => Promise.reject(new Error("the store is away"))],
			["outlasts keyLookupTimeoutMs", (held: Promise<void>) => held.then(() => null)],
		])("accepts the POST when the store lookup %s", async (outcome, lookup) => {
			let release = () => {};
			const held = new Promise<void>(resolve => (release = resolve));
			const find = jest.spyOn(store, "findTask").mockImplementation(() => lookup(held));
			const published = jest.spyOn(cluster.queue, "publish");
			const key = `lookup-${outcome.split(" ")[0]}`;
			try {
				const res = await postTask(go.url, titled("accepted anyway"), keyed(key));
				expect(res.status).toBe(202);
				expect((await readJson<AcceptedTask>(res)).id).toBe(taskIdOfKey(key));
				expect(find).toHaveBeenCalledWith(taskIdOfKey(key), expect.any(Number));
				expect(published).toHaveBeenCalledTimes(1);
			} finally {
				release();
			}
		});
	});

	describe("once tasks are stored", () => {
		beforeAll(() => cluster.startNode("worker-node", broker => broker.createService(WorkerPyService)));

		it("after a gateway's restart, asks the store: another body 422, the same body the first answer", async () => {
			const first = await readJson<AcceptedTask>(await postTask(flask.url, titled("before the restart"), keyed("restart-1")));
			await storedTask(first.id);
			await cluster.stopNode(flask.broker);
			flask = await cluster.startGateway("flask-node-restarted", ApiFlaskService);
			await flask.broker.waitForServices(["api-go"]);
			await go.broker.waitForServices(["api-flask"]);
			const published = jest.spyOn(cluster.queue, "publish");

			const other = await postTask(flask.url, titled("after the restart"), keyed("restart-1"));
			expect(other.status).toBe(422);
			expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			const same = await postTask(flask.url, titled("before the restart"), keyed("restart-1"));
			expect(same.status).toBe(202);
			expect(await readJson<FirstAnswer>(same)).toEqual({ ...first, status: "processed" });
			expect(published).not.toHaveBeenCalled();
		});

		it("two gateways given one key with two bodies at once: both 202, the store keeps one, the other is dead-lettered duplicate_id", async () => {
			const key = "race-1";
			const id = taskIdOfKey(key);
			const findTask = store.findTask.bind(store);
			let asked = 0;
			let bothAsked = () => {};
			const lookupsMet = new Promise<void>(resolve => (bothAsked = resolve));
			// Both gateways ask the store before either tells the other: the window docs/security.md names.
			jest.spyOn(store, "findTask").mockImplementation(async (askedId, budgetMs) => {
				if (askedId !== id) return findTask(askedId, budgetMs);
				if (++asked === 2) bothAsked();
				await lookupsMet;
				return null;
			});

			const answers = await Promise.all([postTask(flask.url, titled("body A"), keyed(key)), postTask(go.url, titled("body B"), keyed(key))]);
			expect(answers.map(res => res.status)).toEqual([202, 202]);
			jest.restoreAllMocks();

			const kept = await storedTask(id);
			const deadLetter = await eventually("the other task dead-lettered", async () => cluster.queue.deadLettered.find(entry => entry.task.id === id));
			expect(deadLetter.cause.reason).toBe("duplicate_id");
			expect([deadLetter.task.title, kept.title].sort()).toEqual(["body A", "body B"]);

			// Each gateway heard of both bodies and leaves the key to the store from now on.
			for (const gateway of [flask, go]) {
				const same = await postTask(gateway.url, titled(kept.title), keyed(key));
				expect(same.status).toBe(202);
				expect(await readJson<FirstAnswer>(same)).toMatchObject({ id, title: kept.title, source: kept.source, status: "processed" });
				expect((await postTask(gateway.url, titled(deadLetter.task.title), keyed(key))).status).toBe(422);
			}
		});

		it("accepts a keyed POST while no store node is there", async () => {
			await cluster.stopNode(storeNode);
			const res = await postTask(go.url, titled("no store"), keyed("store-gone"));
			expect(res.status).toBe(202);
			expect((await readJson<AcceptedTask>(res)).id).toBe(taskIdOfKey("store-gone"));
		});
	});
});

describe("gateway settings", () => {
	it("refuses a body over settings.maxBodyBytes with 413", async () => {
		const cluster = await startEmbeddedCluster("small-bodies", null, { gateway: { maxBodyBytes: 300 } });
		try {
			expect((await postTask(cluster.flaskUrl, titled("x".repeat(200)))).status).toBe(202);
			const tooLarge = await postTask(cluster.goUrl, JSON.stringify({ title: "x".repeat(200), padding: "y".repeat(200) }));
			expect(tooLarge.status).toBe(413);
		} finally {
			await cluster.stop();
		}
	});
});
