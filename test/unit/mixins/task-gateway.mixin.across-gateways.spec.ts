import type { ServiceBroker } from "moleculer";
import { taskIdOfKey } from "../../../lib/http/idempotency";
import type { KeyClaims } from "../../../lib/store/key-claims";
import type { AcceptedTask, ProcessedTask, QueuedTask } from "../../../lib/task";
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
 * The store node's claims decide each key for both gateways (lib/store/key-claims.ts).
 */

const keyed = (key: string) => ({ "Content-Type": "application/json", "Idempotency-Key": key });
const withoutStatus = ({ status: _status, ...task }: AcceptedTask): QueuedTask => task;

describe("Idempotency-Key across gateways", () => {
	const cluster = new FakeTransporterCluster(`idempotency-${process.pid}`);
	let storeNode: ServiceBroker;
	let claims: KeyClaims;
	let flask: GatewayNode;
	let go: GatewayNode;

	beforeAll(async () => {
		storeNode = await cluster.startNode("store-node", broker => broker.createService(TasksService));
		claims = (storeNode.getLocalService("tasks") as unknown as { keyClaims: KeyClaims }).keyClaims;
		flask = await cluster.startGateway("flask-node", ApiFlaskService);
		go = await cluster.startGateway("go-node", ApiGoService, { keyClaimTimeoutMs: 200 });
	});
	afterAll(() => cluster.stop());
	afterEach(() => jest.restoreAllMocks());

	const storedTask = (id: string) =>
		eventually(`task ${id} stored`, () => storeNode.call<ProcessedTask, { id: string }>("tasks.get", { id }).catch(() => undefined));

	describe("while the task is still queued (no worker yet)", () => {
		it("refuses the key with another body through the other gateway (422), queueing nothing", async () => {
			expect((await postTask(flask.url, titled("the first body"), keyed("cross-1"))).status).toBe(202);
			const published = jest.spyOn(cluster.queue, "publish");

			const other = await postTask(go.url, titled("another body"), keyed("cross-1"));
			expect(other.status).toBe(422);
			expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			expect(published).not.toHaveBeenCalled();
		});

		it("answers the same body through the other gateway with the first answer (id, created_at, source), queueing that task again", async () => {
			const first = await readJson<AcceptedTask>(await postTask(flask.url, titled("retried elsewhere"), keyed("cross-2")));
			const published = jest.spyOn(cluster.queue, "publish");

			const again = await postTask(go.url, titled("retried elsewhere"), keyed("cross-2"));
			expect(again.status).toBe(202);
			expect(again.headers.get("location")).toBe(`/tasks/${first.id}`);
			expect(await readJson(again)).toEqual({ ...first, source: "flask" });
			expect(published.mock.calls).toEqual([[withoutStatus(first)]]);
		});

		it("given one key with two bodies at the same moment, accepts one (202) and refuses the other (422)", async () => {
			const claim = claims.claim.bind(claims);
			let arrived = 0;
			let bothArrived = () => {};
			const met = new Promise<void>(resolve => (bothArrived = resolve));
			// Both claims reach the store before either is decided.
			jest.spyOn(claims, "claim").mockImplementation(async task => {
				if (++arrived === 2) bothArrived();
				await met;
				return claim(task);
			});
			const published = jest.spyOn(cluster.queue, "publish");

			const answers = await Promise.all([postTask(flask.url, titled("body A"), keyed("race-1")), postTask(go.url, titled("body B"), keyed("race-1"))]);
			expect(answers.map(res => res.status).sort()).toEqual([202, 422]);
			const winner = await readJson<AcceptedTask>(answers.find(res => res.status === 202) as Response);
			expect(published.mock.calls).toEqual([[withoutStatus(winner)]]);
		});

		it("accepts a key never used, with the id the key names", async () => {
			const published = jest.spyOn(cluster.queue, "publish");
			const res = await postTask(go.url, titled("a new key"), keyed("never-seen"));
			expect(res.status).toBe(202);
			expect(await readJson<AcceptedTask>(res)).toMatchObject({ id: taskIdOfKey("never-seen"), source: "go", status: "queued" });
			expect(published).toHaveBeenCalledTimes(1);
		});

		it.each([
			["fails", (): Promise<never> => Promise.reject(new Error("the store is away"))],
			["outlasts keyClaimTimeoutMs", (held: Promise<void>) => held.then(() => ({ holder: {} as QueuedTask, first: false }))],
		])("accepts the POST when the claim %s", async (outcome, claim) => {
			let release = () => {};
			const held = new Promise<void>(resolve => (release = resolve));
			const claimed = jest.spyOn(claims, "claim").mockImplementation(() => claim(held));
			const published = jest.spyOn(cluster.queue, "publish");
			const key = `claim-${outcome.split(" ")[0]}`;
			try {
				const res = await postTask(go.url, titled("accepted anyway"), keyed(key));
				expect(res.status).toBe(202);
				expect((await readJson<AcceptedTask>(res)).id).toBe(taskIdOfKey(key));
				expect(claimed).toHaveBeenCalledWith(expect.objectContaining({ id: taskIdOfKey(key), title: "accepted anyway" }));
				expect(published).toHaveBeenCalledTimes(1);
			} finally {
				release();
			}
		});
	});

	describe("once tasks are stored", () => {
		beforeAll(() => cluster.startNode("worker-node", broker => broker.createService(WorkerPyService)));

		it("after a gateway's restart: another body 422, the same body the first answer, and the store keeps the task once", async () => {
			const first = await readJson<AcceptedTask>(await postTask(flask.url, titled("before the restart"), keyed("restart-1")));
			const stored = await storedTask(first.id);
			await cluster.stopNode(flask.broker);
			flask = await cluster.startGateway("flask-node-restarted", ApiFlaskService);
			await flask.broker.waitForServices(["tasks"]);

			const other = await postTask(flask.url, titled("after the restart"), keyed("restart-1"));
			expect(other.status).toBe(422);
			expect(await readJson<ApiError>(other)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
			const same = await postTask(flask.url, titled("before the restart"), keyed("restart-1"));
			expect(same.status).toBe(202);
			expect(await readJson(same)).toEqual(first);
			await eventually("the task queued again is processed", async () => ((await cluster.queue.depth()).messages === 0 ? true : undefined));
			expect(await storedTask(first.id)).toEqual(stored);
			expect(cluster.queue.deadLettered.filter(entry => entry.task.id === first.id)).toEqual([]);
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
