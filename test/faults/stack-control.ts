import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { connectToStack, eventually, ROOT, type Stack } from "../e2e/stack";

const execFileAsync = promisify(execFile);
const STACK_SCRIPT = path.join(ROOT, "scripts/stack.sh");

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

/** Waits until both gateways answer ready through Nginx (their queue connection included). */
export function gatewaysReady(timeoutMs = 60_000): Promise<Stack> {
	return eventually("both gateways ready", () => connectToStack().catch(() => undefined), timeoutMs);
}

/** Brings back whatever a fault left down (`up` starts only what is missing), then waits for the gateways. */
export async function leaveStackHealthy(): Promise<Stack> {
	const allUp = await stackCommand("status").then(() => true, () => false);
	if (!allUp) await stackCommand("up");
	return gatewaysReady();
}
