import { setTimeout as sleep } from "node:timers/promises";
import type { TaskDocument } from "../../lib/task";
import { deadLetteredCount } from "../support/rabbitmq";
import { publishReport, textTable } from "../support/fault-report";
import { postPaced, RETRYABLE_STATUSES, type Gateway } from "../support/retrying-client";
import { gatewaysReady, type Stack } from "../support/stack";
import { stackCommand } from "../../scripts/stack-control";
import * as runs from "../support/run-accounting";

/**
 * The promise under faults: a 202 means the task is stored exactly once. Phase after phase, 12
 * clients post through Nginx while one kind of fault hits the stack; afterwards every accepted
 * task must be in the store once, and nothing else of the run.
 */

/** A client gives up on a task after 60 s; a full RabbitMQ restart takes about 15 s here. */
const LOAD: runs.LoadPlan = { run: `faults-${Date.now().toString(36)}`, tasksPerPhase: 1000, clients: 12, retryBudgetMs: 60_000 };
/** How long a phase's load lasts when nothing goes wrong: the fault lands in the middle of it. */
const PHASE_LOAD_MS = 8000;
const FAULT_AT_MS = 2000;
const KILL_EVERY_MS = 1000;

interface Fault extends runs.FaultWindow {
	/** The gateway the fault took away, if it took only one. */
	gateway?: Gateway;
}

/** What shows, from the outside, that the cluster has recovered from a fault. */
type RecoverySignal = "component ready" | "first 202" | "first task stored";

interface Scenario {
	name: string;
	/** The fault is on the path of POST /tasks, so clients may see 502/503/504 or lose connections. */
	onRequestPath: boolean;
	recoveredBy: RecoverySignal;
	/** Injects the phase's faults while its load runs; resolves once every component is back. */
	inject(stack: Stack, loadDone: () => boolean): Promise<Fault[]>;
}

type Phase = runs.PhaseRun<Scenario, Fault>;

async function restartOnce(component: string, gateway?: Gateway): Promise<Fault[]> {
	await sleep(FAULT_AT_MS);
	const startedAt = Date.now();
	await stackCommand("restart", component);
	return [{ startedAt, readyAt: Date.now(), gateway }];
}

/** SIGKILLs the worker nodes in turn, one every KILL_EVERY_MS while the load runs, each started again at once. */
async function killWorkersInTurn(stack: Stack, loadDone: () => boolean): Promise<Fault[]> {
	const workers = stack.nodes.filter(node => node.startsWith("worker-"));
	const restarts: Promise<Fault>[] = [];
	const latestRestart = new Map<string, Promise<Fault>>();
	await sleep(KILL_EVERY_MS);
	for (let turn = 0; !loadDone(); turn++) {
		const worker = workers[turn % workers.length];
		await latestRestart.get(worker);
		const startedAt = Date.now();
		await stackCommand("kill", worker);
		const restart = stackCommand("start", worker).then(() => ({ startedAt, readyAt: Date.now() }));
		// Awaited in turn or at the end; until then a failure must not count as unhandled.
		restart.catch(() => undefined);
		restarts.push(restart);
		latestRestart.set(worker, restart);
		await sleep(KILL_EVERY_MS);
	}
	return Promise.all(restarts);
}

const SCENARIOS: Scenario[] = [
	{ name: "worker SIGKILL every 1 s", onRequestPath: false, recoveredBy: "component ready", inject: killWorkersInTurn },
	{ name: "RabbitMQ restart", onRequestPath: true, recoveredBy: "first 202", inject: () => restartOnce("rabbitmq") },
	{ name: "FerretDB restart", onRequestPath: false, recoveredBy: "first task stored", inject: () => restartOnce("ferretdb") },
	{ name: "gateway restart (api-flask-1)", onRequestPath: true, recoveredBy: "first 202", inject: () => restartOnce("api-flask-1", "flask") },
	{ name: "Nginx restart", onRequestPath: true, recoveredBy: "first 202", inject: () => restartOnce("nginx") },
];

async function runPhase(stack: Stack, scenario: Scenario, phase: number): Promise<Phase> {
	let loadDone = false;
	const load = postPaced(stack.baseUrl, runs.planPhase(LOAD.run, phase, LOAD.tasksPerPhase), {
		clients: LOAD.clients,
		spacingMs: PHASE_LOAD_MS / LOAD.tasksPerPhase,
		budgetMs: LOAD.retryBudgetMs,
	});
	const [posted, faults] = await Promise.allSettled([load.finally(() => (loadDone = true)), scenario.inject(stack, () => loadDone)]);
	if (faults.status === "rejected") throw faults.reason;
	if (posted.status === "rejected") throw posted.reason;
	// The next phase starts on a whole cluster, e.g. with the gateways reconnected to RabbitMQ.
	await gatewaysReady();
	return { scenario, posted: posted.value, faults: faults.value };
}

/** Attempts that a client should never have seen in this phase. */
function unexpectedAttempts({ scenario, posted }: Phase): string[] {
	return posted.flatMap(task =>
		task.attempts
			.filter(({ result }) => result !== 202)
			.filter(({ result }) => !scenario.onRequestPath || (typeof result === "number" && !RETRYABLE_STATUSES.includes(result)))
			.map(({ result }) => `${scenario.name}: ${task.title} got ${result}`),
	);
}

function recoveryMs(phase: Phase, fault: Fault, documents: TaskDocument[]): number {
	switch (phase.scenario.recoveredBy) {
		case "component ready":
			return fault.readyAt - fault.startedAt;
		case "first 202": {
			const accepted = phase.posted
				.filter(task => !fault.gateway || task.gateway === fault.gateway)
				.flatMap(task => task.attempts)
				.filter(attempt => attempt.result === 202 && attempt.sentAt >= fault.readyAt);
			return Math.min(...accepted.map(attempt => attempt.doneAt)) - fault.startedAt;
		}
		case "first task stored": {
			const stored = documents.map(document => document.processed_at.getTime()).filter(time => time >= fault.readyAt);
			return Math.min(...stored) - fault.startedAt;
		}
	}
}

function describeRecovery(phase: Phase, documents: TaskDocument[]): string {
	const worst = Math.max(...phase.faults.map(fault => recoveryMs(phase, fault, documents)));
	const seconds = Number.isFinite(worst) ? `${(worst / 1000).toFixed(1)} s` : "never";
	const many = phase.faults.length > 1 ? `, worst of ${phase.faults.length}` : "";
	return `${seconds} (${phase.scenario.recoveredBy}${many})`;
}

describe(`${SCENARIOS.length * LOAD.tasksPerPhase} tasks through worker crashes and RabbitMQ, FerretDB, gateway and Nginx restarts`, () => {
	const run = new runs.FaultRun<Phase, TaskDocument>(LOAD);

	beforeAll(() => run.open());

	// 5,000 tasks a run would otherwise pile up in the developer's store.
	afterAll(() => run.close(), 180_000);

	it("runs each phase's load through its fault and reports what became of every task", async () => {
		for (const [index, scenario] of SCENARIOS.entries()) run.phases.push(await runPhase(run.stack, scenario, index));

		await run.settle({ title: 1, processed_at: 1 });

		const rows = run.phases.map((phase, index) => {
			const counts = runs.taskCounts(phase.posted, run.documentsOf(index));
			const failed = phase.posted.filter(task => task.failure).length;
			return [phase.scenario.name, ...counts.cells, String(failed + unexpectedAttempts(phase).length), describeRecovery(phase, run.documents)];
		});
		publishReport(
			[
				`Fault run ${LOAD.run}: ${run.phases.length} phases of ${LOAD.tasksPerPhase} tasks, ${LOAD.clients} clients through Nginx`,
				textTable(["scenario", "accepted", "stored", "lost", "duplicated", "retried", "unexpected", "time to recover"], rows),
				"retried: attempts answered 502/503/504 or cut off, then retried with the same Idempotency-Key.",
				"unexpected: tasks never accepted, plus answers a client should not have seen in that phase.",
				"time to recover, from the fault: component ready = stack.sh start/restart returned; first 202 = first",
				"accepted request sent after the component was back; first task stored = first task stored after that.",
			].join("\n"),
		);
	}, 600_000);

	it("gets a 202 for every task, with the id its Idempotency-Key names", () => {
		runs.expectEveryTaskAccepted(run.posted(), SCENARIOS.length * LOAD.tasksPerPhase);
	});

	it("stores every accepted task exactly once, and nothing else of the run", () => {
		runs.expectStoredExactlyOnce(run.posted(), run.documents);
	});

	it("answers nothing but 202, and 502/503/504 or a lost connection while a fault is on the request path", () => {
		expect(run.phases.flatMap(unexpectedAttempts)).toEqual([]);
	});

	it("leaves task_queue empty, with nothing unacknowledged", () => {
		expect(run.drained).toEqual(expect.objectContaining({ messages_ready: 0, messages_unacknowledged: 0 }));
	});

	it("dead-letters nothing", async () => {
		expect(await deadLetteredCount(run.stack.taskQueue)).toBe(run.deadLetteredBefore);
	});
});
