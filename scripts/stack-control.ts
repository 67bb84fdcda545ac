import { execFile, execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseEnv, promisify } from "node:util";
import type { QueueType } from "../lib/config";
import {
	awaitStates,
	hasFailed,
	isReady,
	isRunning,
	isStep,
	processes,
	processesOnceUp,
	processState,
	restartProcess,
	ROOT,
	scaleProcess,
	signalProcess,
	STACK,
	startProcess,
	stopProcess,
	type ProcessState,
} from "./process-compose-client";

export { ROOT, STACK };

/**
 * The local stack at run time, through process-compose's REST API: which node runs where, and the
 * commands `scripts/stack.sh status|kill|start|restart` and `up`'s wait (this file's CLI), the
 * fault and HA tests and the bench use. Processes are named as process-compose.yaml declares
 * them; the Moleculer nodes are replicas of their role, replica k being node <role>-(k+1).
 */

/** How long a component may take to be ready again (STACK_TIMEOUT, as `up` reads it). */
const DEFAULT_TIMEOUT_MS = Number(process.env.STACK_TIMEOUT ?? 60) * 1000;
const ROLES = ["api-flask", "api-go", "worker-py", "worker-go"] as const;
const WORKER_ROLES = ["worker-py", "worker-go"] as const;
const REPLICA_NAME = new RegExp(`^(${ROLES.join("|")})(?:-(\\d+))?$`);

export interface StackNode {
	/** The Moleculer node id, e.g. worker-py-1. */
	id: string;
	role: string;
	/** The process-compose process that runs it, e.g. worker-py or worker-py-0. */
	process: string;
	pid: number;
}

/** The node a process runs, or undefined for RabbitMQ, FerretDB, ... */
function nodeOf(process: ProcessState): StackNode | undefined {
	const match = REPLICA_NAME.exec(process.name);
	if (!match) return undefined;
	return { id: `${match[1]}-${Number(match[2] ?? 0) + 1}`, role: match[1], process: process.name, pid: process.pid };
}

/** The cluster's node processes that run now. */
export async function stackNodes(): Promise<StackNode[]> {
	return (await processes()).filter(isRunning).flatMap(process => nodeOf(process) ?? []);
}

/** The process of a component: a process name (rabbitmq, rq2, nginx...) or a node id. */
function resolve(component: string, states: ProcessState[]): ProcessState {
	const found =
		states.find(process => process.name === component && !REPLICA_NAME.test(component)) ?? states.find(process => nodeOf(process)?.id === component);
	if (!found || isStep(found) || found.status === "Disabled") {
		const known = states.filter(process => !isStep(process) && process.status !== "Disabled").map(process => nodeOf(process)?.id ?? process.name);
		throw new Error(`unknown component '${component}'; try one of: ${known.join(" ")}`);
	}
	return found;
}

/** Last lines of the processes' logs, for an error that says why they are not up. */
function logTails(states: ProcessState[]): string {
	return states
		.map(process => {
			const [file] = logFiles(process);
			const lines = existsSync(file) ? readFileSync(file, "utf8").trimEnd().split("\n").slice(-15) : ["(no log)"];
			return `--- ${path.relative(ROOT, file)}\n${lines.map(line => `    ${line}`).join("\n")}`;
		})
		.join("\n");
}

/** Where a process's output goes (process-compose.yaml's log_location), then the files of its own logs. */
function logFiles(process: ProcessState): string[] {
	const logs = path.join(STACK, "logs");
	const node = nodeOf(process);
	if (node) return [path.join(logs, `${node.role}.replica${Number(node.id.split("-").pop()) - 1}.log`)];
	if (process.name === "nginx") return [path.join(logs, "nginx.log")];
	if (/^rq\d$/.test(process.name))
		return [path.join(logs, `${process.name}.log`), path.join(STACK, `rabbitmq/${process.name}/log/${process.name}@localhost.log`)];
	return [path.join(logs, `${process.name}.log`)];
}

function describeNotReady(wanted: (process: ProcessState) => boolean) {
	return (states: ProcessState[]) => {
		const waiting = states.filter(process => wanted(process) && !isReady(process));
		return `not ready: ${waiting.map(process => `${nodeOf(process)?.id ?? process.name} (${process.status}, ${process.is_ready})`).join(", ")}\n${logTails(waiting)}`;
	};
}

function describeFailed(states: ProcessState[]): string | undefined {
	const failed = states.filter(hasFailed);
	return failed.length
		? `failed: ${failed.map(process => `${process.name} (${process.status}, exit ${process.exit_code})`).join(", ")}\n${logTails(failed)}`
		: undefined;
}

async function awaitReady(names: string[], timeoutMs: number): Promise<void> {
	const wanted = (process: ProcessState) => names.includes(process.name);
	await awaitStates(states => states.filter(wanted).every(isReady), { timeoutMs, describe: describeNotReady(wanted), failure: describeFailed });
}

/** A worker role's replicas; its count is 0 when its one replica is kept stopped. */
const replicasOf = (role: string, states: ProcessState[]) => states.filter(process => nodeOf(process)?.role === role);

/**
 * `up` after scripts/stack.sh has handed over: runs `counts` workers of each role (scaling the
 * replicas; a role of 0 keeps its one replica stopped), starts every process that does not run,
 * and waits until all are ready.
 */
async function up(timeoutMs: number, counts: Record<(typeof WORKER_ROLES)[number], number>): Promise<void> {
	let states = await processesOnceUp(timeoutMs);
	for (const role of WORKER_ROLES) {
		const replicas = replicasOf(role, states);
		if (replicas.length !== Math.max(counts[role], 1)) await scaleProcess(replicas[0].name, Math.max(counts[role], 1));
	}
	states = await processes();
	const off = new Set(WORKER_ROLES.filter(role => counts[role] === 0).flatMap(role => replicasOf(role, states).map(process => process.name)));
	for (const name of off) if (isRunning(await processState(name))) await stopProcess(name);
	const wanted = states.filter(process => !isStep(process) && process.status !== "Disabled" && !off.has(process.name));
	// Pending ones wait for what they depend on; Restarting ones come back by themselves.
	for (const process of wanted) if (["Completed", "Error", "Skipped"].includes(process.status)) await startProcess(process.name);
	await awaitReady(
		wanted.map(process => process.name),
		timeoutMs,
	);
}

/** One line per process, and whether every one that should run is up. */
async function status(): Promise<{ lines: string[]; healthy: boolean }> {
	const env = existsSync(STACK_ENV) ? stackEnv() : {};
	const lines: string[] = [];
	let healthy = true;
	const shown = (await processes()).filter(process => !isStep(process) && process.status !== "Disabled");
	for (const process of shown.sort((a, b) => a.name.localeCompare(b.name))) {
		const node = nodeOf(process);
		const off = node && WORKER_ROLES.some(role => role === node.role && env[`${role.replace("-", "_").toUpperCase()}_COUNT`] === "0");
		const state = isReady(process) ? "up" : off ? "off" : "down";
		if (state === "down") healthy = false;
		const detail = isRunning(process) ? `pid ${process.pid}, ${process.status}, ${process.is_ready}, restarts ${process.restarts}` : process.status;
		lines.push(`${(node?.id ?? process.name).padEnd(12)} ${state.padEnd(5)} ${detail} (process ${process.name})`);
	}
	return { lines, healthy };
}

/**
 * SIGKILL, as a crash would: no graceful stop, so the node's unacked deliveries go back to the
 * queue. Unlike a crash, the process stays down (the tool's own stop, sent while it waits to be
 * restarted) until `start`. Resolves with the pid it killed.
 */
export async function kill(component: string): Promise<number> {
	const process = resolve(component, await processes());
	if (!isRunning(process)) throw new Error(`${component} is not running`);
	await signalProcess(process.name, 9);
	await awaitStates(states => resolve(component, states).pid !== process.pid || !isRunning(resolve(component, states)), {
		timeoutMs: 10_000,
		describe: () => `${component} (pid ${process.pid}) did not die of SIGKILL`,
	});
	await stopProcess(process.name);
	await awaitStates(states => !isRunning(resolve(component, states)), { timeoutMs: 30_000, describe: () => `${component} did not stop` });
	return process.pid;
}

export async function start(component: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
	const process = resolve(component, await processes());
	// One that waits to be restarted after a crash comes back by itself.
	if (!isRunning(process) && process.status !== "Restarting") await startProcess(process.name);
	await awaitReady([process.name], timeoutMs);
}

/**
 * The tool's restart: a graceful stop, then a start. A RabbitMQ node of the cluster restarts only
 * once every quorum queue would keep a majority without it, as an operator would restart it.
 */
export async function restart(component: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
	const process = resolve(component, await processes());
	if (/^rq\d$/.test(process.name) && isRunning(process)) {
		const timeout = String(timeoutMs / 1000);
		await promisify(execFile)(STACK_SCRIPT, ["rabbitmq-cli", process.name, "rabbitmq-upgrade", "await_online_quorum_plus_one", "--timeout", timeout], {
			cwd: ROOT,
		}).catch(err => {
			throw new Error(`some quorum queue would lose its majority without ${process.name}`, { cause: err });
		});
	}
	await restartProcess(process.name);
	await awaitStates(states => resolve(component, states).pid !== process.pid && isReady(resolve(component, states)), {
		timeoutMs,
		describe: describeNotReady(other => other.name === process.name),
	});
}

const STACK_SCRIPT = path.join(ROOT, "scripts/stack.sh");
const execFileAsync = promisify(execFile);

// Nodes (re)started through stack.sh run as `stack.sh up` starts them: Jest's NODE_ENV=test stays out.
const scriptEnv = { ...process.env };
delete scriptEnv.NODE_ENV;

/**
 * A command of `scripts/stack.sh` and resolves once it has finished, i.e. once the component is
 * ready again: status (rejects when something is down), kill, start and restart straight through
 * the REST API, anything else (up) through the script; rejects with what went wrong.
 */
export async function stackCommand(command: string, component = ""): Promise<void> {
	switch (command) {
		case "status": {
			const { lines, healthy } = await status();
			if (!healthy) throw new Error(`the local stack is not all up:\n${lines.join("\n")}`);
			return;
		}
		case "kill":
			await kill(component);
			return;
		case "start":
			return start(component);
		case "restart":
			return restart(component);
	}
	const args = [command, component].filter(Boolean);
	try {
		await execFileAsync(STACK_SCRIPT, args, { cwd: ROOT, env: scriptEnv, timeout: 180_000 });
	} catch (err) {
		const { stdout = "", stderr = "", message } = err as Error & { stdout?: string; stderr?: string };
		throw new Error(`scripts/stack.sh ${args.join(" ")} failed: ${message}\n${stdout}${stderr}`, { cause: err });
	}
}

/** Settings every node the benchmark (re)starts gets, on top of the stack's own. */
let nodeEnv: Record<string, string> = {};

function stackScript(args: string[], env: Record<string, string>, quiet: boolean): void {
	try {
		execFileSync(STACK_SCRIPT, args, {
			stdio: quiet ? "pipe" : "inherit",
			env: { ...scriptEnv, ...nodeEnv, ...env },
		});
	} catch (err) {
		// Quiet runs keep the script's own account of what failed for the error.
		const output = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
		throw new Error(`stack.sh ${args.join(" ")} failed${output ? `:\n${output}` : ""}`, { cause: err });
	}
}

/** `stack.sh up`; quiet unless it fails, since the benchmark calls it between runs. */
export function stackUp(env: Record<string, string> = {}, quiet = false): void {
	stackScript(["up"], env, quiet);
}

/**
 * Restarts every node on database `name` (or the stack's default, for null), so that the
 * benchmark's hundreds of thousands of tasks never land in the developer's `mydb`.
 */
export async function useDatabase(name: string | null): Promise<void> {
	nodeEnv = name ? { DB_NAME: name } : {};
	// `up` writes the setting where every node reads it when it starts.
	stackUp({}, true);
	for (const node of await stackNodes()) stackScript(["restart", node.id], {}, true);
}

/** How the stack runs RabbitMQ: Debian's single node or the cluster of three, and the task queue's type. */
export interface RabbitSetup {
	nodes: 1 | 3;
	queueType: QueueType;
}

const STACK_ENV = path.join(STACK, "stack.env");

/** The running stack's settings, as `stack.sh up` wrote them; throws when the stack is down. */
export function stackEnv(): Record<string, string> {
	return parseEnv(readFileSync(STACK_ENV, "utf8")) as Record<string, string>;
}

/** The running stack's RabbitMQ setup, or null when the stack is down. */
export function rabbitSetup(): RabbitSetup | null {
	if (!existsSync(STACK_ENV)) return null;
	const env = stackEnv();
	return { nodes: Number(env.RABBIT_NODES) as RabbitSetup["nodes"], queueType: env.RABBIT_QUEUE_TYPE as QueueType };
}

/** The AMQP ports of the running stack's RabbitMQ nodes: the single node's, or each of the cluster's. */
export function rabbitPorts(): number[] {
	const env = stackEnv();
	return env.RABBIT_HOSTS ? env.RABBIT_HOSTS.split(",").map(host => Number(host.split(":").pop())) : [Number(env.RABBIT_PORT)];
}

/** The running stack's RabbitMQ, through its first node. */
export function rabbitUrl(): string {
	return `amqp://guest:guest@127.0.0.1:${rabbitPorts()[0]}/%2F`;
}

/**
 * Brings the whole stack down and up again on a RabbitMQ setup, the same or another: the nodes
 * must start anew to reach other brokers or declare the queue otherwise, and a broker the setup
 * leaves out must not spend CPU beside the one measured. `up` replaces a task queue of the other
 * type, which must be empty.
 */
export function useRabbit(setup: RabbitSetup): void {
	stackScript(["down"], {}, true);
	stackUp({ RABBIT_NODES: String(setup.nodes), RABBIT_QUEUE_TYPE: setup.queueType }, true);
}

/** Moves the leader of the cluster's quorum task queue to RabbitMQ node `node` (rq1..rq3). */
export function leadQueueOn(node: string): void {
	stackScript(["lead", node], {}, true);
}

/**
 * Runs exactly `py` worker-py and `go` worker-go nodes: process-compose stops the extra ones
 * gracefully (they store and ack what they hold) and starts the missing ones.
 */
export function setWorkerCounts(py: number, go: number): void {
	stackUp({ WORKER_PY_COUNT: String(py), WORKER_GO_COUNT: String(go) }, true);
}

/** The pid of a process of the stack (ferretdb, nginx, ...), as process-compose reports it. */
export async function pidOf(name: string): Promise<number> {
	return (await processState(name)).pid;
}

/** Resident set sizes of every node, sampled until `stop`; keeps each node's peak. */
export class RssSampler {
	readonly peakMb = new Map<string, number>();
	private timer: NodeJS.Timeout | null = null;
	/** The nodes as last listed: scaling and restarts change them while the sampler runs. */
	private nodes: StackNode[] = [];

	start(intervalMs = 250): void {
		this.timer = setInterval(() => void this.refresh(), intervalMs);
	}

	stop(): void {
		if (this.timer) clearInterval(this.timer);
		this.sample();
	}

	/** Current RSS of each role's nodes, in MB. */
	async current(role: string): Promise<number[]> {
		await this.refresh();
		return this.nodes.filter(node => node.role === role).map(node => rssMb(node.pid, "VmRSS"));
	}

	private async refresh(): Promise<void> {
		this.nodes = await stackNodes().catch(() => this.nodes);
		this.sample();
	}

	private sample(): void {
		for (const node of this.nodes) {
			// VmHWM is the kernel's own high-water mark, so peaks between samples count too.
			const peak = rssMb(node.pid, "VmHWM");
			this.peakMb.set(node.id, Math.max(this.peakMb.get(node.id) ?? 0, peak));
		}
	}
}

function rssMb(pid: number, field: "VmRSS" | "VmHWM"): number {
	try {
		const status = readFileSync(`/proc/${pid}/status`, "utf8");
		const kb = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
		return Math.round(kb / 102.4) / 10;
	} catch {
		return 0;
	}
}

/** The CLI behind scripts/stack.sh's runtime commands. */
async function main([command, ...args]: string[]): Promise<void> {
	switch (command) {
		case "up":
			return up(Number(args[0]) * 1000, { "worker-py": Number(args[1]), "worker-go": Number(args[2]) });
		case "status": {
			const { lines, healthy } = await status();
			console.log(lines.join("\n"));
			if (!healthy) process.exitCode = 1;
			return;
		}
		case "kill": {
			const pid = await kill(required(args[0], "kill"));
			console.log(`[stack] ${args[0]} killed (SIGKILL, pid ${pid}) and kept down until \`start\``);
			return;
		}
		case "start":
			return start(required(args[0], "start"));
		case "restart":
			return restart(required(args[0], "restart"));
		case "log-files":
			for (const file of logFiles(resolve(required(args[0], "show the log of"), await processes()))) if (existsSync(file)) console.log(file);
			return;
		default:
			throw new Error(`unknown command '${command}'`);
	}
}

function required(component: string | undefined, verb: string): string {
	if (!component) throw new Error(`${verb} what? a process (rabbitmq, rq1..rq3, ferretdb, nginx, prometheus) or a node id (api-flask-1, worker-py-1, ...)`);
	return component;
}

if (require.main === module) {
	main(process.argv.slice(2)).catch((err: Error) => {
		console.error(`[stack] ERROR: ${err.message}`);
		process.exitCode = 1;
	});
}
