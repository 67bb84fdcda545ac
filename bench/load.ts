import { fork } from "node:child_process";
import path from "node:path";
import autocannon from "autocannon";

export interface LoadFigures {
	requestsPerSecond: number;
	p50Ms: number;
	p99Ms: number;
	requests: number;
	non2xx: number;
	errors: number;
	seconds: number;
}

const TASK_BODY = JSON.stringify({ title: "benchmark task" });

/** POSTs tasks at `url` with autocannon, for `durationSeconds` or until `amount` requests. */
export async function postTasks(
	url: string,
	load: { connections: number; durationSeconds?: number; amount?: number; requestsPerSecond?: number },
): Promise<LoadFigures> {
	const result = await autocannon({
		url,
		method: "POST",
		headers: { "content-type": "application/json" },
		body: TASK_BODY,
		connections: load.connections,
		// autocannon rejects a key given as undefined: pass only the one that bounds the run.
		...(load.amount ? { amount: load.amount } : { duration: load.durationSeconds }),
		...(load.requestsPerSecond ? { overallRate: load.requestsPerSecond } : {}),
		timeout: 10,
		// autocannon notices that a run is over only at its next sample: with the default 1 s, a run
		// of `amount` requests lasted a whole number of seconds, and the cost phase's tasks/s with it.
		sampleInt: 100,
	});
	return {
		requestsPerSecond: Math.round(result.requests.total / result.duration),
		p50Ms: result.latency.p50,
		p99Ms: result.latency.p99,
		requests: result.requests.total,
		non2xx: result.non2xx,
		errors: result.errors + result.timeouts,
		seconds: result.duration,
	};
}

/**
 * The same from a child process (bench/load-child.ts), so that the load's CPU is not counted in
 * the process that measures its own.
 */
export function postTasksFromChild(url: string, amount: number, requestsPerSecond = 0): Promise<LoadFigures> {
	const child = fork(path.join(__dirname, "load-child.ts"), [url, String(amount), String(requestsPerSecond)], { execArgv: ["--import", "tsx"] });
	return new Promise((resolve, reject) => {
		child.once("message", figures => resolve(figures as LoadFigures));
		child.once("error", reject);
	});
}
