import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MongoClient } from "mongodb";
import { deadLetterQueueOf } from "../../lib/queue/task-queue";
import { ROOT } from "../../scripts/stack-control";
import { containers, docker, serviceStates } from "../support/compose";
import { eventually } from "../support/eventually";
import { publishReport, seconds, textTable } from "../support/fault-report";
import { fromAnyNode, queueInfo, type ClusterNode, type QueueInfo } from "../support/rabbitmq";
import { outageMs, postPaced, type PostedTask } from "../support/retrying-client";
import * as runs from "../support/run-accounting";
import { connectToStack, gatewaysReady, type Stack } from "../support/stack";

/**
 * docker-compose.ha.yml on a real Docker engine, as users run it: three RabbitMQ nodes that form
 * one cluster, task_queue a quorum queue on all three, and the node of the queue's leader killed
 * with SIGKILL (`docker kill`) while retrying clients post through Nginx, then started again.
 * scripts/compose-test.sh brings the overlay up (one container a role) with
 * test/compose/docker-compose.ha.test.yml, which also publishes the management API of rabbitmq-2
 * and rabbitmq-3 on the loopback, so that the cluster can be watched while any one node is down;
 * STACK_ENV lists the three ports as RABBITMQ_MANAGEMENT_PORTS.
 */

const RABBIT_SERVICES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"];
/** RabbitMQ names a node rabbit@<host name>, and the overlay names each host after its service. */
const RABBIT_NODES = RABBIT_SERVICES.map(service => `rabbit@${service}`);
const serviceOf = (erlangNode: string) => erlangNode.replace(/^rabbit@/, "");

const REPORT = path.join(ROOT, ".compose/ha-report.txt");
const REPORT_COLUMNS = [
	"scenario",
	"accepted",
	"stored",
	"lost",
	"duplicated",
	"retried",
	"longest 503 run",
	"consuming again",
	"longest worker idle",
	"rejoined",
];
/** 3,000 tasks spread over 30 s: enough to see the kill in flight, little enough for a 2-core CI machine. */
const LOAD: runs.LoadPlan = { run: `compose-ha-${Date.now().toString(36)}`, tasksPerPhase: 3000, clients: 16, retryBudgetMs: 30_000 };
const LOAD_MS = 30_000;
/** The kill lands while tasks flow and the workers hold deliveries; the node stays down as long as in `npm run test:ha`. */
const KILL_AFTER_MS = 6000;
const KILLED_FOR_MS = 5000;
/**
 * What the tests hold the longest 503 run and the longest a worker stores nothing to, as `npm run
 * test:ha` does on the local stack. On the rabbitmq stand-in (3.10), a gateway or worker that
 * reconnects in the moment before the new leader is known (a new leader takes about 0.3 s) gets a
 * channel bound to the dead leader, which neither confirms nor delivers until the killed node is
 * back; lib/queue replaces such a channel within half a second (PUBLISH_STALL_MS,
 * CONSUMER_STALL_MS).
 */
const GOAL_MS = 2000;
/** A killed node boots again, reads its data and catches its replica up: 10-30 s on a busy 2-core machine. */
const REJOIN_WITHIN_MS = 90_000;
/** The management API aggregates over the cluster on each call: polled gently while the load runs. */
const POLL_MS = 500;

interface Kill {
	service: string;
	killedAt: number;
	/** `docker start` returned. */
	startedAgainAt: number;
	/** Every node's management API lists all three running, and the queue is online on all three. */
	rejoinedAt: number;
}

interface Run {
	startedAt: number;
	loadDoneAt: number;
	posted: PostedTask[];
	kill: Kill;
}

/** What one worker node did after the kill. */
interface WorkerAfterKill {
	node: string;
	/** From the kill to its first store of a task accepted after the kill. */
	consumedAgainMs: number;
	/** Tasks accepted after the killed node was started again that it stored. */
	storedAfterStart: number;
}

const sameNodes = (listed: string[]) => [...listed].sort().join(",") === RABBIT_NODES.join(",");

describe("docker-compose.ha.yml: three RabbitMQ nodes, a quorum task_queue, and the leader's node killed under load", () => {
	let stack: Stack;
	let mongo: MongoClient;
	let managementPorts: string[];
	let deadLetteredBefore: number;
	let run: Run | undefined;
	let documents: runs.StoredDocument[] = [];
	let drained: runs.Drained | Error;
	/** The longest a worker node stored nothing while the load ran. */
	let workerIdle = { ms: Infinity, node: "" };

	/** The running nodes that the management API of each node lists: one cluster is the same three from every node. */
	function clusterViews(): Promise<string[][]> {
		return Promise.all(
			managementPorts.map(async port => (await fromAnyNode<ClusterNode[]>([port], "/nodes")).filter(node => node.running).map(node => node.name)),
		);
	}

	async function expectOneCluster(): Promise<void> {
		expect((await clusterViews()).map(view => [...view].sort())).toEqual(RABBIT_SERVICES.map(() => RABBIT_NODES));
	}

	/** The management API's counters lag a few seconds behind a new queue: read them once they are there. */
	function deadLetterQueue(): Promise<QueueInfo> {
		return eventually(
			`${deadLetterQueueOf(stack.taskQueue)}'s counters`,
			async () => {
				const queue = await queueInfo(managementPorts, deadLetterQueueOf(stack.taskQueue));
				return queue.messages_ready === undefined ? undefined : queue;
			},
			30_000,
			POLL_MS,
		);
	}

	async function killLeaderAndStartAgain(): Promise<Kill> {
		await sleep(KILL_AFTER_MS);
		const { leader } = await queueInfo(managementPorts, stack.taskQueue);
		if (!leader) throw new Error(`${stack.taskQueue} has no leader: is it a quorum queue?`);
		const service = serviceOf(leader);
		const [container] = await containers(service);
		await docker(["kill", "--signal", "KILL", container]);
		const killedAt = Date.now();
		// Docker counts `docker kill` as a stop by the user: the restart policy leaves the container down.
		await sleep(KILLED_FOR_MS);
		await docker(["start", container]);
		const startedAgainAt = Date.now();
		await eventually(
			`${service} running in every node's view of the cluster, with its replica of ${stack.taskQueue} online`,
			async () => {
				const views = await clusterViews().catch(() => undefined);
				if (!views?.every(sameNodes)) return undefined;
				return sameNodes((await queueInfo(managementPorts, stack.taskQueue)).online ?? []) ? true : undefined;
			},
			REJOIN_WITHIN_MS,
			POLL_MS,
		);
		return { service, killedAt, startedAgainAt, rejoinedAt: Date.now() };
	}

	/** Each worker node's first store after the kill, counting only tasks accepted after it (not those it held). */
	function workersAfterKill({ posted, kill }: Run): WorkerAfterKill[] {
		const acceptedAt = new Map(posted.map(task => [task.title, task.attempts.find(attempt => attempt.result === 202)?.doneAt ?? Infinity]));
		const workers = stack.nodes.filter(node => stack.roleOf(node)?.startsWith("worker-"));
		return workers.map(node => {
			const mine = documents.filter(document => document.node_id === node);
			const afterKill = mine.filter(document => (acceptedAt.get(document.title) ?? 0) > kill.killedAt);
			const firstStore = Math.min(...afterKill.map(document => document.processed_at.getTime()));
			return {
				node: `${stack.roleOf(node)} ${node}`,
				consumedAgainMs: firstStore - kill.killedAt,
				storedAfterStart: mine.filter(document => (acceptedAt.get(document.title) ?? 0) > kill.startedAgainAt).length,
			};
		});
	}

	/** The run's table, on stdout and in .compose/ha-report.txt. */
	function reportRun(run: Run): void {
		const longest503 = Math.max(...run.posted.map(outageMs));
		const slowest = workersAfterKill(run).reduce((worst, worker) => (worker.consumedAgainMs > worst.consumedAgainMs ? worker : worst));
		const fault = run.kill;
		publishReport(
			[
				`compose HA run ${LOAD.run}: ${LOAD.tasksPerPhase} tasks over ${LOAD_MS / 1000} s, ${LOAD.clients} clients through Nginx, docker-compose.ha.yml (3 RabbitMQ nodes, quorum ${stack.taskQueue})`,
				textTable(REPORT_COLUMNS, [
					[
						`SIGKILL of ${fault.service}`,
						...runs.taskCounts(run.posted, documents).cells,
						seconds(longest503),
						`${seconds(slowest.consumedAgainMs)} (${slowest.node})`,
						`${seconds(workerIdle.ms)} (${stack.roleOf(workerIdle.node)} ${workerIdle.node})`,
						seconds(fault.rejoinedAt - fault.startedAgainAt),
					],
				]),
				"longest 503 run: the longest any client went from its first failed attempt (502/503/504, cut off) to its 202.",
				"consuming again: from the kill until the slowest worker stored its first task accepted after the kill.",
				"longest worker idle: the longest a worker node stored nothing while the load ran.",
				"rejoined: from `docker start` until every node listed the node as running and the queue was online on it again.",
				`goal: no client without a 202 and no worker without a store for more than ${seconds(GOAL_MS)}: ${longest503 <= GOAL_MS && workerIdle.ms <= GOAL_MS ? "met" : "missed"}`,
				`fault: ${fault.service} (the leader of ${stack.taskQueue}) killed ${seconds(fault.killedAt - run.startedAt)} into the load, started again ${seconds(fault.startedAgainAt - fault.killedAt)} later`,
			].join("\n"),
			REPORT,
		);
	}

	beforeAll(async () => {
		stack = await connectToStack();
		managementPorts = stack.env.RABBITMQ_MANAGEMENT_PORTS.split(",");
		mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 10_000 });
		deadLetteredBefore = (await deadLetterQueue()).messages_ready;
	}, 60_000);

	afterAll(() => mongo?.close());

	it("runs every service healthy, the three RabbitMQ nodes among them", async () => {
		const listing = await serviceStates();
		const services = listing.map(line => line.split(" ")[0]);
		for (const service of ["mongo", "nginx", ...RABBIT_SERVICES, "api-flask", "api-go", "worker-py", "worker-go"]) expect(services).toContain(service);
		for (const line of listing) expect(line).toMatch(/ running healthy$/);
	});

	it("forms one cluster: every node's management API lists the same three nodes, all running", async () => {
		await expectOneCluster();
	});

	it("declares task_queue as a quorum queue with a member online on each of the three nodes", async () => {
		const queue = await queueInfo(managementPorts, stack.taskQueue);
		expect(queue.type).toBe("quorum");
		expect(queue.arguments["x-queue-type"]).toBe("quorum");
		expect([...(queue.members ?? [])].sort()).toEqual(RABBIT_NODES);
		expect([...(queue.online ?? [])].sort()).toEqual(RABBIT_NODES);
		expect(RABBIT_NODES).toContain(queue.leader);
	});

	it(`posts ${LOAD.tasksPerPhase} tasks through Nginx while the leader's node is SIGKILLed and started again, and reports what became of them`, async () => {
		const startedAt = Date.now();
		let loadDoneAt = 0;
		const load = postPaced(stack.baseUrl, runs.planPhase(LOAD.run, 0, LOAD.tasksPerPhase), {
			clients: LOAD.clients,
			spacingMs: LOAD_MS / LOAD.tasksPerPhase,
			budgetMs: LOAD.retryBudgetMs,
		}).finally(() => (loadDoneAt = Date.now()));
		// The load goes on whatever becomes of the fault, so that a failed kill does not leave clients posting behind the next test.
		const [posted, kill] = await Promise.allSettled([load, killLeaderAndStartAgain()]);
		if (posted.status === "rejected") throw posted.reason;
		if (kill.status === "rejected") throw kill.reason;
		run = { startedAt, loadDoneAt, posted: posted.value, kill: kill.value };
		await gatewaysReady();

		({ documents, drained } = await runs.settledRun<runs.StoredDocument>(stack, mongo, LOAD.run, run.posted.filter(task => task.acceptedId).length, {
			title: 1,
			processed_at: 1,
			node_id: 1,
		}));
		workerIdle = runs.longestWorkerGap(
			run,
			documents.filter(document => stack.roleOf(document.node_id)?.startsWith("worker-")),
		);
		reportRun(run);
	}, 240_000);

	it("gets a 202 for every task, with the id its Idempotency-Key names", () => {
		runs.expectEveryTaskAccepted(run?.posted ?? [], LOAD.tasksPerPhase);
	});

	it("stores every accepted task exactly once, and nothing else of the run", () => {
		runs.expectStoredExactlyOnce(run?.posted ?? [], documents);
	});

	it(`leaves no client without a 202 for more than ${GOAL_MS} ms`, () => {
		const tooLong = (run?.posted ?? []).filter(task => outageMs(task) > GOAL_MS).map(task => `${task.title}: ${outageMs(task)} ms`);
		expect(tooLong).toEqual([]);
	});

	it(`has every worker storing tasks accepted after the kill, idle for at most ${GOAL_MS} ms, and storing after the node is started again`, () => {
		expect(run).toBeDefined();
		const workers = workersAfterKill(run as Run);
		// One container of each worker role.
		expect(workers).toHaveLength(2);
		for (const worker of workers) {
			expect({ ...worker, consumedAgainInTime: worker.consumedAgainMs <= GOAL_MS }).toMatchObject({ consumedAgainInTime: true });
			expect(worker.storedAfterStart).toBeGreaterThan(0);
		}
		expect({ ...workerIdle, idleInTime: workerIdle.ms <= GOAL_MS }).toMatchObject({ idleInTime: true });
	});

	it("has the killed node back in the cluster, with its replica of task_queue online", async () => {
		expect(run?.kill.rejoinedAt).toBeGreaterThan(0);
		await expectOneCluster();
		expect([...((await queueInfo(managementPorts, stack.taskQueue)).online ?? [])].sort()).toEqual(RABBIT_NODES);
	});

	it("leaves task_queue empty, with nothing unacknowledged, and dead-letters nothing", async () => {
		expect(drained).toEqual(expect.objectContaining({ messages_ready: 0, messages_unacknowledged: 0 }));
		expect((await deadLetterQueue()).messages_ready).toBe(deadLetteredBefore);
	});
});
