import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { ROOT } from "../../scripts/stack-control";

/**
 * The Docker CLI for the compose specs. scripts/compose-test.sh exports what `docker compose`
 * needs to find the stack under test: COMPOSE_FILE, COMPOSE_PROJECT_NAME, and DOCKER_HOST when it
 * started an engine of its own.
 */

const run = promisify(execFile);

/** `docker compose <args>` in the project root; a failure carries compose's own words. */
export async function compose(args: string[], timeoutMs = 120_000): Promise<string> {
	try {
		return (await run("docker", ["compose", ...args], { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 << 20 })).stdout;
	} catch (err) {
		const { stderr, stdout } = err as { stderr?: string; stdout?: string };
		throw new Error(`docker compose ${args.join(" ")} failed: ${(err as Error).message}\n${stdout ?? ""}${stderr ?? ""}`, { cause: err });
	}
}

export async function docker(args: string[], timeoutMs = 60_000): Promise<string> {
	return (await run("docker", args, { timeout: timeoutMs })).stdout;
}

/** Ids of a service's running containers. */
export async function containers(service: string): Promise<string[]> {
	return (await compose(["ps", "-q", service])).split("\n").filter(Boolean);
}

/** "service state health" of every running container of the stack, one a line. */
export async function serviceStates(): Promise<string[]> {
	return (await compose(["ps", "--format", "{{.Service}} {{.State}} {{.Health}}"])).split("\n").filter(Boolean);
}
