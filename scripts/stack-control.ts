import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseEnv, promisify } from "node:util";
import type { QueueType } from "../lib/config";

/** The project's root folder. */
export const ROOT = path.resolve(__dirname, "..");
export const STACK = path.join(ROOT, ".stack");
const RUN = path.join(STACK, "run");
const NODE_PID_FILE = /^((?:api|worker)-[a-z]+)-(\d+)\.pid$/;

export interface StackNode {
	id: string;
	role: string;
	pid: number;
}

/** The cluster's node processes, from the local stack's pid files. */
export function stackNodes(): StackNode[] {
	return readdirSync(RUN)
		.map(file => ({ file, match: NODE_PID_FILE.exec(file) }))
		.filter(entry => entry.match)
		.map(({ file, match }) => ({
			id: file.slice(0, -".pid".length),
			role: (match as RegExpExecArray)[1],
			pid: Number(readFileSync(path.join(RUN, file), "utf8")),
		}))
		.filter(node => isAlive(node.pid));
}

function isAlive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch {
		return false;
	}
}

const STACK_SCRIPT = path.join(ROOT, "scripts/stack.sh");
const execFileAsync = promisify(execFile);

// Restarted nodes must run as `stack.sh up` starts them: Jest's NODE_ENV=test stays out.
const scriptEnv = { ...process.env };
delete scriptEnv.NODE_ENV;

/**
 * Runs `scripts/stack.sh <args>` (restart, kill, start, status, up) and resolves once it has
 * finished, i.e. once the component is ready again; rejects with the script's output.
 */
export async function stackCommand(...args: string[]): Promise<void> {
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
			env: { ...process.env, ...nodeEnv, ...env },
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
export function useDatabase(name: string | null): void {
	nodeEnv = name ? { DB_NAME: name } : {};
	for (const node of stackNodes()) stackScript(["restart", node.id], {}, true);
	stackUp({}, true);
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
 * Runs exactly `py` worker-py and `go` worker-go nodes: the extra ones get SIGTERM (a graceful
 * stop that stores and acks what they hold), the missing ones are started by `stack.sh up`.
 */
export async function setWorkerCounts(py: number, go: number): Promise<void> {
	const wanted: Record<string, number> = { "worker-py": py, "worker-go": go };
	const extra = stackNodes().filter(node => node.role in wanted && Number(node.id.split("-").pop()) > wanted[node.role]);
	for (const node of extra) process.kill(node.pid, "SIGTERM");
	while (extra.some(node => isAlive(node.pid))) await sleep(100);
	if (py + go > 0) stackUp({ WORKER_PY_COUNT: String(py), WORKER_GO_COUNT: String(go) }, true);
}

/** Resident set sizes of every node, sampled until `stop`; keeps each node's peak. */
export class RssSampler {
	readonly peakMb = new Map<string, number>();
	private timer: NodeJS.Timeout | null = null;

	start(intervalMs = 250): void {
		this.timer = setInterval(() => this.sample(), intervalMs);
	}

	stop(): void {
		if (this.timer) clearInterval(this.timer);
		this.sample();
	}

	/** Current RSS of each role's nodes, in MB. */
	current(role: string): number[] {
		return stackNodes()
			.filter(node => node.role === role)
			.map(node => rssMb(node.pid, "VmRSS"));
	}

	private sample(): void {
		for (const node of stackNodes()) {
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
