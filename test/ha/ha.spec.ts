import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import { ServiceBroker } from "moleculer";
import { ClusterAmqpTransporter } from "../../lib/cluster-amqp-transporter";
import { ROOT, stackCommand } from "../../scripts/stack-control";
import { spawnTracked } from "../support/child-processes";
import { eventually } from "../support/eventually";
import { publishReport, seconds, textTable } from "../support/fault-report";
import { outageMs, postPaced, RETRYABLE_STATUSES } from "../support/retrying-client";
import { gatewaysReady } from "../support/stack";
import { deadLetteredCount, queueInfo } from "../support/rabbitmq";
import * as runs from "../support/run-accounting";

/**
 * The promise of the 3-node RabbitMQ cluster (`RABBIT_NODES=3`, a quorum task queue): a node
 * killed with SIGKILL, then every node restarted in turn, and still every accepted task stored
 * once, no client without a 202 for more than 2 s, no worker idle for more than 2 s, and every
 * Moleculer node reachable over the transporter afterwards.
 */

const REPORT = path.join(ROOT, ".stack/ha-report.txt");
/** Longest a client may go from its first failed attempt to its 202, and a worker between two stores. */
const MAX_OUTAGE_MS = 2000;
/** A client gives up on a task after 30 s: far above the goal, so that a miss shows as a number. */
const LOAD: runs.LoadPlan = { run: `ha-${Date.now().toString(36)}`, tasksPerPhase: 10_000, clients: 16, retryBudgetMs: 30_000 };
/** How long a SIGKILLed node stays down before it is started again. */
const KILLED_FOR_MS = 5000;
/** Moleculer's transporter reconnects 5 s after a loss, to the next URL; two tries and some slack. */
const TRANSPORTER_BACK_WITHIN_MS = 20_000;
const WORKER_ROLES = /^worker-/;

interface Fault extends runs.FaultWindow {
	what: string;
}

interface Scenario {
	name: string;
	/** How long the phase's load lasts when nothing goes wrong: it spans every fault of the phase. */
	loadMs: number;
	inject(): Promise<Fault[]>;
}

interface Phase extends runs.PhaseRun<Scenario, Fault> {
	startedAt: number;
	loadDoneAt: number;
	/** How long after the last fault every stack node answered over the transporter again. */
	transporterBackMs: number;
}

let managementPorts: string[] = [];

/** rq1 of "rq1@localhost" */
const nodeOf = (erlangNode: string) => erlangNode.replace(/@.*/, "");

async function killLeader(queue: string): Promise<Fault[]> {
	await sleep(5000);
	const { leader } = await queueInfo(managementPorts, queue);
	if (!leader) throw new Error(`${queue} has no leader: is it a quorum queue?`);
	const node = nodeOf(leader);
	const startedAt = Date.now();
	await stackCommand("kill", node);
	await sleep(KILLED_FOR_MS);
	await stackCommand("start", node);
	// Every client connects to the first node of RABBIT_HOSTS first.
	const connections = node === "rq1" ? " and the clients' connections" : "";
	return [{ what: `SIGKILL ${node} (the queue's leader${connections}), started again after ${KILLED_FOR_MS / 1000} s`, startedAt, readyAt: Date.now() }];
}

/** Each node in turn: a graceful stop, a start, and the queue's replica back online before the next. */
async function rollingRestart(queue: string): Promise<Fault[]> {
	const faults: Fault[] = [];
	await sleep(3000);
	for (const node of ["rq1", "rq2", "rq3"]) {
		const startedAt = Date.now();
		await stackCommand("restart", node);
		await eventually(
			`${queue} online on all three nodes`,
			async () => ((await queueInfo(managementPorts, queue)).online?.length === 3 ? true : undefined),
			30_000,
		);
		faults.push({ what: `restart ${node}`, startedAt, readyAt: Date.now() });
	}
	return faults;
}

describe(`${2 * LOAD.tasksPerPhase} tasks through a SIGKILLed RabbitMQ node and a rolling restart of the cluster`, () => {
	const run = new runs.FaultRun<Phase, runs.StoredDocument>(LOAD);
	let probe: ServiceBroker;

	/** Every stack node answers $node.health over the transporter: its connection is back. */
	async function transporterBack(): Promise<number> {
		const started = Date.now();
		await eventually(
			"every node answering over the transporter",
			async () => {
				const answers = await Promise.all(
					run.stack.nodes.map(nodeID =>
						probe.call("$node.health", {}, { nodeID, timeout: 2000 }).then(
							() => true,
							() => false,
						),
					),
				);
				return answers.every(Boolean) ? true : undefined;
			},
			TRANSPORTER_BACK_WITHIN_MS,
		);
		return Date.now() - started;
	}

	async function runPhase(scenario: Scenario, index: number): Promise<Phase> {
		let loadDoneAt = 0;
		const startedAt = Date.now();
		const load = postPaced(run.stack.baseUrl, runs.planPhase(LOAD.run, index, LOAD.tasksPerPhase), {
			clients: LOAD.clients,
			spacingMs: scenario.loadMs / LOAD.tasksPerPhase,
			budgetMs: LOAD.retryBudgetMs,
		});
		// The transporter is checked as soon as the last fault is over, while the load still runs.
		const faultsAndTransporter = scenario.inject().then(async faults => ({ faults, transporterBackMs: await transporterBack().catch(() => Infinity) }));
		const [posted, injected] = await Promise.allSettled([load.finally(() => (loadDoneAt = Date.now())), faultsAndTransporter]);
		if (injected.status === "rejected") throw injected.reason;
		if (posted.status === "rejected") throw posted.reason;
		await gatewaysReady();
		return { scenario, posted: posted.value, ...injected.value, startedAt, loadDoneAt };
	}

	beforeAll(async () => {
		await run.open();
		managementPorts = (run.stack.env.RABBITMQ_MANAGEMENT_PORTS ?? run.stack.env.RABBITMQ_MANAGEMENT_PORT).split(",");
		const queue = await queueInfo(managementPorts, run.stack.taskQueue);
		if (queue.type !== "quorum" || queue.members?.length !== 3) {
			throw new Error(
				`${run.stack.taskQueue} is a ${queue.type} queue on ${queue.members?.length ?? 1} node(s): run this against RABBIT_NODES=3 scripts/stack.sh up (npm run test:ha does)`,
			);
		}
		probe = new ServiceBroker({
			namespace: run.stack.namespace,
			nodeID: `ha-probe-${process.pid}`,
			// The transporter every node and the REPL use (moleculer.config.ts).
			transporter: new ClusterAmqpTransporter({ url: run.stack.env.RABBIT_HOSTS.split(",").map(host => `amqp://guest:guest@${host}`) }),
			logger: false,
		});
		await probe.start();
		await transporterBack();
	}, 60_000);

	afterAll(async () => {
		await probe?.stop();
		await run.close();
	}, 180_000);

	it("runs both scenarios and reports what became of every task", async () => {
		const scenarios: Scenario[] = [
			{ name: "SIGKILL of one node", loadMs: 20_000, inject: () => killLeader(run.stack.taskQueue) },
			{ name: "rolling restart of all three", loadMs: 45_000, inject: () => rollingRestart(run.stack.taskQueue) },
		];
		for (const [index, scenario] of scenarios.entries()) run.phases.push(await runPhase(scenario, index));

		await run.settle({ title: 1, processed_at: 1, node_id: 1 });

		const rows = run.phases.map((phase, index) => {
			const ofPhase = run.documentsOf(index);
			const counts = runs.taskCounts(phase.posted, ofPhase);
			const gap = runs.longestWorkerGap(
				phase,
				ofPhase.filter(document => WORKER_ROLES.test(document.node_id)),
			);
			return [
				phase.scenario.name,
				...counts.cells,
				seconds(Math.max(...phase.posted.map(outageMs))),
				`${seconds(gap.ms)} (${gap.node})`,
				seconds(phase.transporterBackMs),
			];
		});
		const faultLines = run.phases.flatMap(phase =>
			phase.faults.map(fault => `  ${phase.scenario.name}: ${fault.what}, ready again after ${seconds(fault.readyAt - fault.startedAt)}`),
		);
		publishReport(
			[
				`HA run ${LOAD.run}: ${run.phases.length} phases of ${LOAD.tasksPerPhase} tasks, ${LOAD.clients} clients through Nginx, 3 RabbitMQ nodes, quorum ${run.stack.taskQueue}`,
				textTable(
					["scenario", "accepted", "stored", "lost", "duplicated", "retried", "longest 503 run", "longest worker idle", "transporter back"],
					rows,
				),
				"longest 503 run: the longest any client went from its first failed attempt (502/503/504, cut off) to its 202.",
				"longest worker idle: the longest a worker node stored nothing while the load ran (to consume again).",
				"transporter back: from the end of the last fault until every node answered $node.health over the transporter.",
				"faults:",
				...faultLines,
			].join("\n"),
			REPORT,
		);
	}, 600_000);

	it("gets a 202 for every task, with the id its Idempotency-Key names", () => {
		runs.expectEveryTaskAccepted(run.posted(), 2 * LOAD.tasksPerPhase);
	});

	it("stores every accepted task exactly once, and nothing else of the run", () => {
		runs.expectStoredExactlyOnce(run.posted(), run.documents);
	});

	it(`leaves no client without a 202 for more than ${MAX_OUTAGE_MS} ms, and answers nothing but 202 and retryable errors`, () => {
		const tooLong = run.phases.flatMap(phase =>
			phase.posted.filter(task => outageMs(task) > MAX_OUTAGE_MS).map(task => `${task.title}: ${outageMs(task)} ms`),
		);
		expect(tooLong).toEqual([]);
		const unexpected = run.phases.flatMap(phase =>
			phase.posted.flatMap(task =>
				task.attempts.filter(({ result }) => typeof result === "number" && result !== 202 && !RETRYABLE_STATUSES.includes(result)),
			),
		);
		expect(unexpected).toEqual([]);
	});

	it(`has every worker storing again within ${MAX_OUTAGE_MS} ms`, () => {
		for (const [index, phase] of run.phases.entries()) {
			const ofPhase = run.documentsOf(index).filter(document => WORKER_ROLES.test(document.node_id));
			const gap = runs.longestWorkerGap(phase, ofPhase);
			expect({ phase: phase.scenario.name, ...gap, ok: gap.ms <= MAX_OUTAGE_MS }).toMatchObject({ ok: true });
		}
	});

	it("has every node reachable over the transporter again after each phase", () => {
		expect(run.phases.map(phase => ({ phase: phase.scenario.name, back: Number.isFinite(phase.transporterBackMs) }))).toEqual(
			run.phases.map(phase => ({ phase: phase.scenario.name, back: true })),
		);
	});

	it("refuses to start a node that would declare task_queue classic, saying what to do", async () => {
		const node = spawnTracked(
			path.join(ROOT, "node_modules/.bin/node"),
			["node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js"],
			{
				cwd: ROOT,
				env: {
					PATH: process.env.PATH,
					SERVICEDIR: "dist/services",
					SERVICES: "worker-py,tasks",
					NODE_ID: `ha-classic-${process.pid}`,
					NAMESPACE: `${run.stack.namespace}-mismatch`,
					RABBIT_HOSTS: run.stack.env.RABBIT_HOSTS,
					RABBIT_QUEUE: run.stack.taskQueue,
					RABBIT_QUEUE_TYPE: "classic",
					MONGO_URI: run.stack.mongoUri,
					DB_NAME: run.stack.dbName,
				},
			},
		) as ChildProcessWithoutNullStreams;
		let output = "";
		node.stdout.on("data", chunk => (output += chunk));
		node.stderr.on("data", chunk => (output += chunk));
		const exitCode = await new Promise<number | null>(resolve => {
			const timer = setTimeout(() => node.kill("SIGKILL"), 30_000);
			node.on("exit", code => {
				clearTimeout(timer);
				resolve(code);
			});
		});
		expect(exitCode).toBe(1);
		expect(output).toContain(`RabbitMQ already has a queue "${run.stack.taskQueue}" declared differently from RABBIT_QUEUE_TYPE=classic`);
		expect(output).toContain("set RABBIT_QUEUE_TYPE to the queue's type");
	}, 40_000);

	it("leaves task_queue empty, with nothing unacknowledged, and dead-letters nothing", async () => {
		expect(run.drained).toEqual(expect.objectContaining({ messages_ready: 0, messages_unacknowledged: 0 }));
		expect(await deadLetteredCount(run.stack.taskQueue)).toBe(run.deadLetteredBefore);
	});
});
