import { request } from "node:http";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The project's root folder. */
export const ROOT = path.resolve(__dirname, "..");
export const STACK = path.join(ROOT, ".stack");
/** Where the local stack's process-compose answers its REST API (scripts/stack.sh starts it so). */
export const SOCKET = path.join(STACK, "run/process-compose.sock");

/** A process as process-compose reports it (GET /processes). */
export interface ProcessState {
	name: string;
	/** Running, Pending, Restarting, Completed, Disabled, Skipped, Error, ... */
	status: string;
	/** Ready, Not Ready, or "-" before a probe has answered. */
	is_ready: string;
	pid: number;
	restarts: number;
	exit_code: number;
}

/** The processes that run once and end: set-up steps, not supervised ones. */
const STEPS = new Set(["build", "task-queue", "rabbitmq-cluster"]);

export const isStep = (process: ProcessState) => STEPS.has(process.name);
export const isRunning = (process: ProcessState) => process.status === "Running" && process.pid > 0;
export const isReady = (process: ProcessState) => isRunning(process) && process.is_ready === "Ready";
/** A step that failed, or a process that could not run because one did. */
export const hasFailed = (process: ProcessState) =>
	process.status === "Skipped" || process.status === "Error" || (isStep(process) && process.status === "Completed" && process.exit_code !== 0);

/** One call to the REST API; rejects with process-compose's own error text. */
export function callApi<T>(method: "GET" | "POST" | "PATCH", route: string): Promise<T> {
	return new Promise((resolve, reject) => {
		const req = request({ socketPath: SOCKET, method, path: route, timeout: 30_000 }, response => {
			let body = "";
			response.setEncoding("utf8");
			response.on("data", chunk => (body += chunk));
			response.on("end", () => {
				const parsed = body ? (JSON.parse(body) as T & { error?: string }) : ({} as T & { error?: string });
				if ((response.statusCode ?? 500) >= 400) reject(new Error(`process-compose ${method} ${route}: ${parsed.error ?? response.statusCode}`));
				else resolve(parsed);
			});
		});
		req.on("timeout", () => req.destroy(new Error(`process-compose ${method} ${route}: no answer within 30 s`)));
		req.on("error", err =>
			reject(new Error(`process-compose is not answering on ${SOCKET} (is the stack up? npm run stack:up): ${err.message}`, { cause: err })),
		);
		req.end();
	});
}

export async function processes(): Promise<ProcessState[]> {
	return (await callApi<{ data: ProcessState[] }>("GET", "/processes")).data;
}

/** The processes, once process-compose answers: a detached one opens its socket a moment after it starts. */
export async function processesOnceUp(timeoutMs: number): Promise<ProcessState[]> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		try {
			return await processes();
		} catch (err) {
			if (Date.now() > deadline) throw err;
			await sleep(100);
		}
	}
}

export async function processState(name: string): Promise<ProcessState> {
	const found = (await processes()).find(process => process.name === name);
	if (!found) throw new Error(`process-compose runs no process '${name}'`);
	return found;
}

export const startProcess = (name: string) => callApi("POST", `/process/start/${name}`);
export const restartProcess = (name: string) => callApi("POST", `/process/restart/${name}`);
/** The tool's own stop: the process's graceful shutdown, and no restart until it is started again. */
export const stopProcess = (name: string) => callApi("PATCH", `/process/stop/${name}`);
/** A signal to the process's whole process group (its children too), as a crash of the process would be. */
export const signalProcess = (name: string, signal: number) => callApi("PATCH", `/process/signal/${name}/${signal}`);
export const scaleProcess = (name: string, count: number) => callApi("PATCH", `/process/scale/${name}/${count}`);

/**
 * Polls the processes until `done` says the wanted state is reached; throws `failure(states)`'s
 * message when it returns one, or with `describe(states)` once `timeoutMs` pass with no process
 * getting ready or done: each may take that long, as they come up one after the other.
 */
export async function awaitStates(
	done: (states: ProcessState[]) => boolean,
	options: { timeoutMs: number; describe: (states: ProcessState[]) => string; failure?: (states: ProcessState[]) => string | undefined },
): Promise<ProcessState[]> {
	let deadline = Date.now() + options.timeoutMs;
	let settled = -1;
	for (;;) {
		const states = await processes();
		if (done(states)) return states;
		const failed = options.failure?.(states);
		if (failed) throw new Error(failed);
		const nowSettled = states.filter(process => isReady(process) || process.status === "Completed").length;
		if (nowSettled > settled) [settled, deadline] = [nowSettled, Date.now() + options.timeoutMs];
		if (Date.now() > deadline) throw new Error(`${options.describe(states)} (nothing got ready for ${options.timeoutMs / 1000} s)`);
		await sleep(200);
	}
}
