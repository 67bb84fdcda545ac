import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * CPU time per task of each component: utime + stime of its processes (every thread, as
 * /proc/PID/stat counts them) before and after a fixed number of tasks. On a 2-core machine
 * that, not a rate, is what decides throughput, and it is far less noisy than a rate.
 */

/** Clock ticks per second of /proc/PID/stat (USER_HZ); 100 on Linux unless the kernel says otherwise. */
const TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** The processes of each component, by name: gateways, workers, store, rabbitmq, nginx. */
export type Components = Record<string, number[]>;

/** CPU time, in ms, that these processes have spent since they started. */
export function cpuMsOf(pids: number[]): number {
	return pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
}

function cpuMs(pid: number): number {
	try {
		// The command name (field 2) may hold spaces: the fields after it start after the last ")".
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
		const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		// fields[11] and [12] are utime and stime (fields 14 and 15 of proc(5)).
		return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
	} catch {
		return 0; // the process is gone: it spends nothing more
	}
}

/**
 * The process listening on a TCP port of this network namespace: the local stack's RabbitMQ,
 * say, and not the one a container runs beside it.
 */
export function pidListeningOn(port: number): number {
	const line = execFileSync("ss", ["-ltnpH", `sport = :${port}`], { encoding: "utf8" });
	const pid = /pid=(\d+)/.exec(line)?.[1];
	if (!pid) throw new Error(`nothing listens on port ${port}`);
	return Number(pid);
}

/** A process and its direct children (Nginx's master and workers). */
export function withChildren(pid: number): number[] {
	try {
		return [
			pid,
			...execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" })
				.trim()
				.split("\n")
				.map(Number),
		];
	} catch {
		return [pid];
	}
}

export interface CpuPerTask {
	/** CPU-ms per 1,000 tasks, by component, and their total. */
	perThousandTasks: Record<string, number>;
	tasks: number;
}

/** Runs `work`, which handles `tasks` tasks, and charges each component's CPU time to them. */
export async function measureCpu<T>(components: Components, tasks: number, work: () => Promise<T>): Promise<{ result: T; cpu: CpuPerTask }> {
	const sample = () => Object.fromEntries(Object.entries(components).map(([name, pids]) => [name, cpuMsOf(pids)]));
	const before = sample();
	const result = await work();
	const after = sample();
	const perThousandTasks: Record<string, number> = {};
	let total = 0;
	for (const name of Object.keys(components)) {
		const spent = ((after[name] - before[name]) * 1000) / Math.max(tasks, 1);
		perThousandTasks[name] = Math.round(spent);
		total += spent;
	}
	perThousandTasks.total = Math.round(total);
	return { result, cpu: { perThousandTasks, tasks } };
}
