import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
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

/** A secret of the stack under test, from the SECRETS_DIR that scripts/compose-test.sh fills. */
export function readSecret(name: string): string {
	return readFileSync(path.join(process.env.SECRETS_DIR as string, name), "utf8").trim();
}

/** A value of .env, as compose gives it to the stack. */
export function dotEnvValue(name: string): string {
	return new RegExp(`^${name}=(.*)$`, "m").exec(readFileSync(path.join(ROOT, ".env"), "utf8"))?.[1] ?? "";
}

export function basic(user: string, password: string): string {
	return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

/** An AMQP login from inside a gateway container (AMQP is published nowhere), and what it may do. */
export async function amqpFrom(container: string, user: string, password: string, declareQueue: string): Promise<{ login: string; declare?: string }> {
	const script = `
		const amqp = require("amqplib");
		const [url, queue] = process.argv.slice(1);
		amqp.connect(url).then(async connection => {
			connection.on("error", () => undefined);
			const channel = await connection.createChannel();
			channel.on("error", () => undefined);
			const declare = await channel.assertQueue(queue, { exclusive: true }).then(() => "declared", err => err.code === 403 ? "ACCESS_REFUSED" : err.message);
			console.log(JSON.stringify({ login: "accepted", declare }));
			await connection.close().catch(() => undefined);
		}, err => console.log(JSON.stringify({ login: /ACCESS_REFUSED|403/.test(err.message) ? "ACCESS_REFUSED" : err.message })));`;
	const url = `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@rabbitmq:5672/%2F`;
	return JSON.parse(await docker(["exec", container, "node", "-e", script, url, declareQueue])) as { login: string; declare?: string };
}
