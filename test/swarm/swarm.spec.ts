import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { MongoClient } from "mongodb";
import type { TaskDocument } from "../../lib/task";
import { eventually } from "../support/eventually";
import { postPaced, postUntilAccepted, type PostedTask } from "../support/retrying-client";
import { expectEveryTaskAccepted, expectStoredExactlyOnce } from "../support/run-accounting";
import { runTag } from "../support/stack";
import {
	docker,
	ENGINES,
	enginesOf,
	desiredReplicas,
	LOST_ENGINE,
	MONGO_URI,
	NGINX_URL,
	nodeIDsIn,
	planTasks,
	PROMETHEUS_URL,
	Repl,
	ROLES,
	runningTaskNodes,
	serviceName,
	setLostEngineLink,
	type Role,
} from "../support/swarm";

/**
 * docker-stack.yml on a live swarm of three engines (scripts/swarm-test.sh, `npm run test:swarm`):
 * swarm-1 the manager with RabbitMQ, MongoDB, Nginx and Prometheus, swarm-2 and swarm-3 workers.
 * The tests run in order, each leaving the stack converged for the next; the last one cuts
 * swarm-3 off the network and brings it back at the end.
 */

const DB_NAME = "mydb";
let mongo: MongoClient;
let repl: Repl;
let linkCut = false;

async function storedOf(tag: string): Promise<TaskDocument[]> {
	return mongo
		.db(DB_NAME)
		.collection<TaskDocument>("tasks")
		.find({ title: { $regex: `^${tag} ` } })
		.toArray();
}

/** Waits until every accepted task of the run is stored, then checks exactly once. */
async function expectAllStored(tag: string, posted: PostedTask[], timeoutMs = 120_000): Promise<TaskDocument[]> {
	const accepted = posted.filter(task => task.acceptedId).length;
	const documents = await eventually(
		`all ${accepted} accepted tasks of ${tag} stored`,
		async () => {
			const found = await storedOf(tag);
			return found.length >= accepted ? found : undefined;
		},
		timeoutMs,
		1000,
	).catch(async err => {
		throw new Error(`${(err as Error).message}; stored: ${(await storedOf(tag)).length}`, { cause: err });
	});
	expectStoredExactlyOnce(posted, documents);
	return documents;
}

/** Every role at its desired replicas, all running on engines that answer. */
async function converged(except?: string): Promise<boolean> {
	for (const role of ROLES) {
		const nodes = (await runningTaskNodes(role)).filter(node => node !== except);
		if (nodes.length !== (await desiredReplicas(role))) return false;
	}
	return true;
}

/** `docker service update` of a role, waiting for it to converge (or to fail). */
const updateImage = (role: Role, image: string) =>
	docker(["service", "update", "--detach=false", "--quiet", "--no-resolve-image", "--image", image, serviceName(role)], { timeoutMs: 300_000 });

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

beforeAll(async () => {
	mongo = await MongoClient.connect(MONGO_URI, { serverSelectionTimeoutMS: 10_000 });
	repl = new Repl();
});

afterAll(async () => {
	await repl?.quit();
	await mongo?.close();
	// The lost engine comes back, so that `docker stack rm` reaches it too.
	if (linkCut) {
		await setLostEngineLink("up");
		await eventually(
			`swarm-${LOST_ENGINE} Ready again`,
			async () => ((await docker(["node", "inspect", "--format", "{{.Status.State}}", `swarm-${LOST_ENGINE}`])).trim() === "ready" ? true : undefined),
			120_000,
			1000,
		);
	}
}, 180_000);

describe("docker-stack.yml on a three-engine swarm", () => {
	it("stores tasks posted through Nginx with worker replicas on all three engines", async () => {
		const workerNodes = [...(await runningTaskNodes("worker-py")), ...(await runningTaskNodes("worker-go"))];
		expect([...new Set(workerNodes)].sort()).toEqual(["swarm-1", "swarm-2", "swarm-3"]);

		const tag = runTag();
		const posted = await postPaced(NGINX_URL, planTasks(tag, 400), { clients: 4, spacingMs: 5, budgetMs: 60_000 });
		expectEveryTaskAccepted(posted, 400);
		const documents = await expectAllStored(tag, posted);
		const byEngine = Object.fromEntries(ENGINES.map(engine => [engine, 0]));
		for (const document of documents) byEngine[enginesOf([document.node_id])[0]]++;
		console.log(`tasks stored per engine: ${JSON.stringify(byEngine)}`);
		expect(enginesOf(documents.map(document => document.node_id))).toEqual([...ENGINES]);
	}, 180_000);

	it("lists Moleculer nodes of all three engines in a REPL on the attachable network", async () => {
		const listing = await repl.nodesUntil("nodes of all three engines in the REPL", text => enginesOf(nodeIDsIn(text)).length === 3);
		console.log(`REPL nodes: ${nodeIDsIn(listing).length} cluster nodes on engines ${enginesOf(nodeIDsIn(listing)).join(", ")}`);
	}, 120_000);

	it("has Prometheus scrape the replicas on all three engines", async () => {
		const expected = (await Promise.all(ROLES.map(desiredReplicas))).reduce((sum, count) => sum + count, 0);
		const query = encodeURIComponent('count by (nodeID) ({__name__=~"moleculer_.+", nodeID!=""})');
		const nodeIDs = await eventually(
			`every one of the ${expected} replicas in Prometheus`,
			async () => {
				const answer = (await (await fetch(`${PROMETHEUS_URL}/api/v1/query?query=${query}`)).json()) as {
					data: { result: { metric: { nodeID: string } }[] };
				};
				const ids = answer.data.result.map(series => series.metric.nodeID);
				return ids.length >= expected && enginesOf(ids).length === 3 ? ids : undefined;
			},
			90_000,
			2000,
		);
		expect(enginesOf(nodeIDs)).toEqual([...ENGINES]);
	}, 120_000);

	it("loses and duplicates nothing while worker-py is scaled up to 5 and down to 1", async () => {
		const tag = runTag();
		const posting = postPaced(NGINX_URL, planTasks(tag, 1200), { clients: 4, spacingMs: 25, budgetMs: 60_000 });
		await sleep(3000);
		await docker(["service", "scale", "--detach=false", `${serviceName("worker-py")}=5`], { timeoutMs: 180_000 });
		expect(await runningTaskNodes("worker-py")).toHaveLength(5);
		await docker(["service", "scale", "--detach=false", `${serviceName("worker-py")}=1`], { timeoutMs: 180_000 });
		const posted = await posting;
		expectEveryTaskAccepted(posted, 1200);
		await expectAllStored(tag, posted);
		await docker(["service", "scale", "--detach=false", `${serviceName("worker-py")}=3`], { timeoutMs: 180_000 });
	}, 420_000);

	it("rolls every role onto a new image while requests go through Nginx: none fails, none is lost", async () => {
		const tag = runTag();
		let updating = true;
		const loop = async (gateway: "flask" | "go", client: number): Promise<PostedTask[]> => {
			const posted: PostedTask[] = [];
			for (let i = 0; updating; i++) {
				// One attempt each (no retry budget): a request that does not get its 202 counts as failed.
				posted.push(await postUntilAccepted(NGINX_URL, { title: `${tag} ${gateway}${client}-${i}`, key: randomUUID(), gateway }, 0));
				await sleep(20);
			}
			return posted;
		};
		const loops = Promise.all([loop("flask", 1), loop("go", 1), loop("flask", 2), loop("go", 2)]);
		const started = Date.now();
		try {
			await Promise.all(ROLES.map(role => updateImage(role, "notes-tasks-cluster:next")));
		} finally {
			updating = false;
		}
		const posted = (await loops).flat();
		const failed = posted.filter(task => !task.acceptedId);
		console.log(`rolling update of 4 roles in ${seconds(Date.now() - started)}: ${posted.length} requests, ${failed.length} failed`);
		expect(failed.map(task => `${task.title}: ${JSON.stringify(task.attempts.map(attempt => attempt.result))}`)).toEqual([]);
		await expectAllStored(tag, posted);
		for (const role of ROLES) {
			expect((await docker(["service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", serviceName(role)])).trim()).toBe(
				"notes-tasks-cluster:next",
			);
		}
	}, 480_000);

	it("rolls an update to an image whose healthcheck fails back by itself", async () => {
		const started = Date.now();
		await docker([
			"service",
			"update",
			"--detach=true",
			"--quiet",
			"--no-resolve-image",
			"--image",
			"notes-tasks-cluster:unhealthy",
			serviceName("api-go"),
		]);
		const state = await eventually(
			"the update of api-go rolled back",
			async () => {
				const status = (
					await docker(["service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", serviceName("api-go")])
				).trim();
				return status === "rollback_completed" || status === "rollback_paused" ? status : undefined;
			},
			240_000,
			2000,
		);
		console.log(`update to the unhealthy image: ${state} after ${seconds(Date.now() - started)}`);
		expect(state).toBe("rollback_completed");
		expect((await docker(["service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", serviceName("api-go")])).trim()).toBe(
			"notes-tasks-cluster:next",
		);
		await eventually("api-go running again", async () => ((await runningTaskNodes("api-go")).length === 1 ? true : undefined), 60_000, 1000);
		const response = await fetch(`${NGINX_URL}/go/tasks`, {
			method: "POST",
			headers: { "Content-Type": "application/json" },
			body: JSON.stringify({ title: `${runTag()} after rollback` }),
		});
		expect(response.status).toBe(202);
	}, 300_000);

	it("loses an engine during posts: Swarm reschedules, the registry drops its nodes, nothing lost or duplicated", async () => {
		const lostHost = `swarm-${LOST_ENGINE}`;
		const before = nodeIDsIn(await repl.nodesUntil("the REPL's nodes", text => enginesOf(nodeIDsIn(text)).length === 3));
		const lostNodes = before.filter(id => enginesOf([id])[0] === LOST_ENGINE);
		const tag = runTag();
		const posting = postPaced(NGINX_URL, planTasks(tag, 1000), { clients: 4, spacingMs: 30, budgetMs: 120_000 });
		await sleep(5000);
		const cutAt = Date.now();
		await setLostEngineLink("down");
		linkCut = true;

		const [nodeDownMs, registryMs, capacityMs] = await Promise.all([
			eventually(
				`${lostHost} down in the swarm`,
				async () => ((await docker(["node", "inspect", "--format", "{{.Status.State}}", lostHost])).trim() === "down" ? Date.now() - cutAt : undefined),
				120_000,
				500,
			),
			repl
				.nodesUntil(
					`the registry without ${lostHost}'s nodes`,
					text => text.includes("Node ID") && !nodeIDsIn(text).some(id => lostNodes.includes(id)),
					120_000,
				)
				.then(() => Date.now() - cutAt),
			eventually(
				"every role back at its replicas on the other engines",
				async () => ((await converged(lostHost)) ? Date.now() - cutAt : undefined),
				240_000,
				1000,
			),
		]);
		const posted = await posting;
		console.log(
			`${lostHost} cut off: swarm node down after ${seconds(nodeDownMs)}, its ${lostNodes.length} Moleculer nodes gone from the registry after ${seconds(registryMs)}, ` +
				`capacity back (every role at its replicas on swarm-1 and swarm-2) after ${seconds(capacityMs)}`,
		);
		expectEveryTaskAccepted(posted, 1000);
		await expectAllStored(tag, posted, 180_000);
	}, 600_000);
});
