import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { once } from "node:events";

/**
 * Every process a test starts, stopped when that test ends, however it ends: passed, failed or
 * timed out. A child left running keeps its pipes open, and Jest then never exits (a failed
 * redelivery test once left its consumer running and hung CI until its limit).
 *
 * Importing this module registers the hooks in the test file: a child started inside a test is
 * killed after that test, one started in `beforeAll` after the file's last test. Each child runs
 * as the leader of a process group of its own, so that a wrapper script (`scripts/repl.sh`) goes
 * down with whatever it started.
 */
const running = new Map<ChildProcess, { startedInTest: boolean }>();

export function spawnTracked(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
	const child = spawn(command, args, { ...options, detached: true });
	running.set(child, { startedInTest: expect.getState().currentTestName !== undefined });
	child.once("close", () => running.delete(child));
	return child;
}

function exited(child: ChildProcess): boolean {
	return child.exitCode !== null || child.signalCode !== null;
}

/** SIGKILL to each child's process group, and wait until their pipes have closed. */
async function killChildren(which: (startedInTest: boolean) => boolean): Promise<void> {
	const doomed = [...running].filter(([, { startedInTest }]) => which(startedInTest)).map(([child]) => child);
	await Promise.all(
		doomed.map(async child => {
			const closed = once(child, "close");
			if (!exited(child) && child.pid !== undefined) {
				try {
					process.kill(-child.pid, "SIGKILL");
				} catch {
					child.kill("SIGKILL");
				}
			}
			await closed;
		}),
	);
}

afterEach(() => killChildren(startedInTest => startedInTest));
afterAll(() => killChildren(() => true));
// A worker that Jest ends in the middle of a test still takes its children along.
process.once("exit", () => {
	for (const child of running.keys()) if (!exited(child) && child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
});
