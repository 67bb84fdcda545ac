import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { MongoClient } from "mongodb";
import type { TaskDocument } from "../../lib/task";
import { connectToStack, inParallel, runTag, type Stack } from "../support/stack";
import { spawnTracked } from "../support/child-processes";
import { eventually } from "../support/eventually";
import { postTask, titled } from "../support/http";
import { ROOT } from "../../scripts/stack-control";
import type { AcceptedTask } from "../../lib/task";
import { postPaced, type PlannedTask } from "../support/retrying-client";
import { compose, containers, docker, serviceStates } from "../support/compose";
import { waitForStored } from "../support/stored-tasks";

/**
 * The docker-compose deployment on a real Docker engine, as users run it. scripts/compose-test.sh
 * (`npm run test:compose`) builds the images, brings the stack up with
 * `--scale worker-py=3 --scale worker-go=2`, and exports what these tests need: COMPOSE_FILE and
 * COMPOSE_PROJECT_NAME for `docker compose`, and STACK_ENV for the stack's ports. The tests run in
 * order and each leaves the stack up and healthy for the next; the script ends with `down -v`.
 */

const UP_TIMEOUT_S = Number(process.env.COMPOSE_TEST_UP_TIMEOUT ?? 240);
const ROLES = ["api-flask", "api-go", "worker-py", "worker-go"] as const;
const WORKERS = { "worker-py": 3, "worker-go": 2 } as const;

/** The Moleculer node id of a cluster container, from the labels of its own metrics. */
async function nodeIdOf(container: string): Promise<string> {
	const script =
		"fetch('http://127.0.0.1:' + process.env.METRICS_PORT + '/metrics').then(r => r.text()).then(t => console.log(/nodeID=\"([^\"]+)\"/.exec(t)[1]))";
	return (await docker(["exec", container, "node", "-e", script])).trim();
}

/** Tasks a gateway container has accepted, from its own metrics (tasks_accepted_total). */
async function acceptedCount(container: string): Promise<number> {
	const script = "fetch('http://127.0.0.1:' + process.env.METRICS_PORT + '/metrics').then(r => r.text()).then(t => console.log(t))";
	const metrics = await docker(["exec", container, "node", "-e", script]);
	return metrics
		.split("\n")
		.filter(line => line.startsWith("tasks_accepted_total{"))
		.reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
}

/** Node ids of every cluster container, by role. */
async function clusterNodes(): Promise<Record<string, string[]>> {
	const byRole: Record<string, string[]> = {};
	for (const role of ROLES) byRole[role] = await Promise.all((await containers(role)).map(nodeIdOf));
	return byRole;
}

let apiGoReplicas = 1;

/** `up -d --wait` with the test's scale, which also starts any container that is down. */
function up(): Promise<string> {
	const scale = ["--scale", `worker-py=${WORKERS["worker-py"]}`, "--scale", `worker-go=${WORKERS["worker-go"]}`, "--scale", `api-go=${apiGoReplicas}`];
	return compose(["up", "-d", "--wait", "--wait-timeout", String(UP_TIMEOUT_S), ...scale], (UP_TIMEOUT_S + 30) * 1000);
}

describe("the docker-compose stack", () => {
	let stack: Stack;
	let mongo: MongoClient;
	const tasks = () => mongo.db(stack.dbName).collection<TaskDocument>("tasks");

	beforeAll(async () => {
		stack = await connectToStack();
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 10_000 });
	});

	afterAll(() => mongo?.close());

	it("runs every service healthy, with 3 worker-py and 2 worker-go containers", async () => {
		const listing = await serviceStates();
		const services = listing.map(line => line.split(" ")[0]);
		for (const service of ["mongo", "rabbitmq", "nginx", "prometheus", ...ROLES]) expect(services).toContain(service);
		for (const line of listing) expect(line).toMatch(/ running healthy$/);
		expect(services.filter(service => service === "worker-py")).toHaveLength(3);
		expect(services.filter(service => service === "worker-go")).toHaveLength(2);
	});

	it("stores tasks on every one of the 5 scaled workers", async () => {
		const nodes = await clusterNodes();
		const tag = runTag();
		const titles = Array.from({ length: 500 }, (_, index) => `${tag} spread ${index}`);
		const accepted = await inParallel(titles, 16, async (title, index) => {
			const response = await postTask(stack.gatewayUrl(index % 2 ? "go" : "flask"), titled(title));
			expect(response.status).toBe(202);
			return (await response.json()) as AcceptedTask;
		});
		const documents = await waitForStored(
			tasks(),
			accepted.map(task => task.id),
			60_000,
		);
		for (const worker of Object.keys(WORKERS)) {
			expect(nodes[worker]).toHaveLength(WORKERS[worker as keyof typeof WORKERS]);
			for (const node of nodes[worker]) {
				const mine = documents.filter(document => document.node_id === node);
				expect({ node, stored: mine.length > 0 }).toEqual({ node, stored: true });
				for (const document of mine) expect(document.processed_by).toBe(worker);
			}
		}
	}, 120_000);

	it("scrapes every replica with the monitoring profile's Prometheus, found by DNS", async () => {
		const expected = new Map<string, string>();
		for (const role of ROLES) {
			for (const container of await containers(role)) {
				// Prometheus finds the nodes on the backend network; the gateways are on the edge one too.
				const backend = `${process.env.COMPOSE_PROJECT_NAME}_backend`;
				const ip = (await docker(["inspect", "-f", `{{(index .NetworkSettings.Networks "${backend}").IPAddress}}`, container])).trim();
				expected.set(`${ip}:${stack.env.METRICS_PORT}`, role);
			}
		}
		expect(expected.size).toBe(1 + 1 + WORKERS["worker-py"] + WORKERS["worker-go"]);
		const prometheus = `http://127.0.0.1:${stack.env.PROMETHEUS_PORT}/api/v1`;
		type Target = { labels: { instance: string; role: string }; health: string };
		const targets = await eventually(
			"every replica scraped and up",
			async () => {
				const answer = (await (await fetch(`${prometheus}/targets`)).json()) as { data: { activeTargets: Target[] } };
				const up = answer.data.activeTargets.filter(target => target.health === "up");
				return up.length === expected.size && up.every(target => expected.has(target.labels.instance)) ? up : undefined;
			},
			60_000,
		);
		for (const target of targets) expect(target.labels.role).toBe(expected.get(target.labels.instance));
		// The 500 tasks of the test before, stored by the workers and counted in their metrics.
		const stored = await eventually(
			"sum(tasks_stored_total) >= 500",
			async () => {
				const answer = (await (await fetch(`${prometheus}/query?query=sum(tasks_stored_total)`)).json()) as {
					data: { result: { value: [number, string] }[] };
				};
				const value = Number(answer.data.result[0]?.value[1]);
				return value >= 500 ? value : undefined;
			},
			60_000,
		);
		expect(stored).toBeGreaterThanOrEqual(500);
	}, 150_000);

	it("scales api-go to 2, and Nginx sends requests to both replicas", async () => {
		apiGoReplicas = 2;
		await up();
		const replicas = await containers("api-go");
		expect(replicas).toHaveLength(2);
		const before = await Promise.all(replicas.map(replica => acceptedCount(replica)));
		const tag = runTag();
		// Nginx re-resolves api-go within `valid=5s`: post in rounds until both have answered.
		await eventually(
			"POST /go/tasks served by both api-go replicas",
			async () => {
				await inParallel(
					Array.from({ length: 20 }, (_, index) => `${tag} ${index}`),
					4,
					async title => {
						expect((await postTask(stack.gatewayUrl("go"), titled(title))).status).toBe(202);
					},
				);
				const after = await Promise.all(replicas.map(replica => acceptedCount(replica)));
				return after.every((count, index) => count > before[index]) ? after : undefined;
			},
			60_000,
		);
	}, 360_000);

	it("loses and duplicates nothing when a worker container is killed during 2,000 posts", async () => {
		const tag = runTag();
		const planned: PlannedTask[] = Array.from({ length: 2000 }, (_, index) => ({
			title: `${tag} kill ${index}`,
			key: `${tag}-${index}`,
			gateway: index % 2 ? "go" : "flask",
		}));
		const [victim] = await containers("worker-py");
		// 2,000 posts spread over about 8 s; the worker dies while they flow and it holds deliveries.
		const killed = sleep(3000).then(() => docker(["kill", "--signal", "KILL", victim]));
		const posted = await postPaced(stack.baseUrl, planned, { clients: 32, spacingMs: 4, budgetMs: 60_000 });
		await killed;
		const failures = posted.filter(task => !task.acceptedId);
		expect(failures.map(task => `${task.title}: ${task.failure}`)).toEqual([]);
		const ids = posted.map(task => task.acceptedId as string);
		expect(new Set(ids).size).toBe(2000);
		await waitForStored(tasks(), ids, 120_000);
		// Nothing twice: every document of this run has its own title, one per posted task.
		const documents = await tasks()
			.find({ title: { $regex: `^${tag} kill ` } })
			.toArray();
		expect(documents).toHaveLength(2000);
		expect(new Set(documents.map(document => document.title)).size).toBe(2000);
		// The killed container comes back (restart policy, or `up` as a user would run it).
		await up();
		expect(await containers("worker-py")).toHaveLength(3);
	}, 420_000);

	it("lists every node with `docker compose run --rm repl` (non-interactive), and leaves cleanly", async () => {
		const nodes = Object.values(await clusterNodes()).flat();
		expect(nodes).toHaveLength(3 + 2 + 1 + apiGoReplicas);
		const child = spawnTracked("docker", ["compose", "--profile", "tools", "run", "--rm", "-T", "repl"], { cwd: ROOT }) as ChildProcessWithoutNullStreams;
		let output = "";
		child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
		child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
		const exited = new Promise<number | null>(resolve => child.once("exit", code => resolve(code)));
		try {
			// The REPL node learns the others within a heartbeat: ask again until all are listed.
			await eventually(
				"every node in the REPL's `nodes`",
				async () => {
					const from = output.length;
					child.stdin.write("nodes\n");
					await sleep(1000);
					const listing = output.slice(from);
					return nodes.every(node => listing.includes(node)) ? listing : undefined;
				},
				90_000,
			).catch(err => {
				throw new Error(`${(err as Error).message}; the REPL wrote:\n${output}`);
			});
			child.stdin.end("quit\n");
			const timer = new AbortController();
			const timedOut = sleep(60_000, "still running", { signal: timer.signal }).catch(() => "aborted");
			expect(await Promise.race([exited, timedOut])).toBe(0);
			timer.abort();
			expect(output).not.toMatch(/Channel ended|\n\s+at /);
		} finally {
			if (child.exitCode === null) child.kill("SIGKILL");
		}
	}, 180_000);

	it("keeps the stored tasks across `down` and `up`", async () => {
		const tag = runTag();
		const response = await postTask(stack.gatewayUrl("flask"), titled(`${tag} before down`));
		expect(response.status).toBe(202);
		const task = (await response.json()) as AcceptedTask;
		await waitForStored(tasks(), [task.id], 30_000);
		const before = await tasks().countDocuments();
		await mongo.close();

		await compose(["down"], 180_000);
		expect(await containers("mongo")).toEqual([]);
		await up();

		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 10_000 });
		expect(await tasks().countDocuments()).toBe(before);
		const read = await eventually(
			`GET /go/tasks/${task.id} after up`,
			async () => {
				const answer = await fetch(`${stack.baseUrl}/go/tasks/${task.id}`);
				return answer.status === 200 ? answer : undefined;
			},
			60_000,
		);
		expect(await read.json()).toMatchObject({ id: task.id, title: task.title, status: "processed" });
		// And the restarted cluster takes new work.
		const after = await postTask(stack.gatewayUrl("go"), titled(`${tag} after up`));
		expect(after.status).toBe(202);
		await waitForStored(tasks(), [((await after.json()) as AcceptedTask).id], 30_000);
	}, 420_000);
});
