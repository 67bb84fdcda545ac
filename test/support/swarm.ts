import { execFile, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { eventually } from "./eventually";
import type { PlannedTask } from "./retrying-client";

/**
 * The live three-engine swarm of scripts/swarm-test.sh (`npm run test:swarm`), which runs the
 * swarm spec inside the namespace of the engines' bridge and exports where everything is.
 */

const run = promisify(execFile);
const subnet = process.env.SWARM_TEST_SUBNET ?? "192.168.250";
const runDir = process.env.SWARM_TEST_RUN ?? "/run/nts-swarm";

export const STACK = process.env.SWARM_TEST_STACK ?? "notes-tasks";
/** The engine whose veth the spec cuts: a worker with nothing pinned to it. */
export const LOST_ENGINE = Number(process.env.SWARM_TEST_LOST_ENGINE ?? 3);
export const ENGINES = [1, 2, 3] as const;
/** swarm-1 holds the host-mode ports: Nginx, Prometheus, MongoDB (the test's override). */
export const NGINX_URL = `http://${subnet}.11`;
export const PROMETHEUS_URL = `http://${subnet}.11:9090`;
/** MongoDB as the application user (scripts/swarm-test.sh exports its password from the secrets). */
const mongoUser = encodeURIComponent(process.env.SWARM_TEST_MONGO_USER ?? "notes-tasks");
const mongoPassword = encodeURIComponent(process.env.SWARM_TEST_MONGO_PASSWORD ?? "");
export const MONGO_URI = `mongodb://${mongoUser}:${mongoPassword}@${subnet}.11:27017/?authSource=admin`;
export const ROLES = ["api-flask", "api-go", "worker-py", "worker-go"] as const;
export type Role = (typeof ROLES)[number];

/** The Docker CLI against engine `n` (the manager by default); a failure carries Docker's own words. */
export async function docker(args: string[], { engine = 1, timeoutMs = 120_000 } = {}): Promise<string> {
	try {
		const env = { ...process.env, DOCKER_HOST: `unix://${runDir}/${engine}/docker.sock` };
		return (await run("docker", args, { env, timeout: timeoutMs, maxBuffer: 64 << 20 })).stdout;
	} catch (err) {
		const { stderr, stdout } = err as { stderr?: string; stdout?: string };
		throw new Error(`docker ${args.join(" ")} failed: ${(err as Error).message}\n${stdout ?? ""}${stderr ?? ""}`, { cause: err });
	}
}

export const serviceName = (role: Role | "nginx" | "prometheus") => `${STACK}_${role}`;

/** The engine a Moleculer node runs on: its node id is <swarm node host name>-<task id>-<pid>. */
export function engineOf(nodeID: string): number | undefined {
	const match = /^swarm-(\d)-/.exec(nodeID);
	return match ? Number(match[1]) : undefined;
}

/** Every engine named by these node ids, in order. */
export const enginesOf = (nodeIDs: Iterable<string>): number[] =>
	[...new Set([...nodeIDs].map(engineOf).filter((engine): engine is number => engine !== undefined))].sort();

/** The swarm nodes that run a service's tasks that are meant to run and do, one entry a task. */
export async function runningTaskNodes(role: Role): Promise<string[]> {
	const listing = await docker(["service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}", serviceName(role)]);
	return listing
		.split("\n")
		.filter(line => / Running /.test(`${line} `))
		.map(line => line.split(" ")[0]);
}

/** The count of replicas a service asks for. */
export async function desiredReplicas(role: Role): Promise<number> {
	return Number((await docker(["service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}", serviceName(role)])).trim());
}

/** Tasks planned under the run's tag, alternating between the gateways, each with its own Idempotency-Key. */
export function planTasks(tag: string, count: number): PlannedTask[] {
	return Array.from({ length: count }, (_, i) => ({ title: `${tag} ${i}`, key: randomUUID(), gateway: i % 2 ? "go" : "flask" }));
}

/**
 * A Moleculer REPL in a container on the stack's attachable network (`docker run --network`), as
 * an operator runs one; its `nodes` command lists the cluster's nodes as its registry sees them.
 */
export class Repl {
	private output = "";
	private readonly child: ChildProcessWithoutNullStreams;

	constructor() {
		const env = { ...process.env, DOCKER_HOST: `unix://${runDir}/1/docker.sock` };
		// prettier-ignore
		this.child = spawn("docker", [
			"run", "--rm", "-i", "--pull", "never", "--network", STACK,
			"-e", "RABBIT_HOST=rabbitmq", "-e", "RABBIT_USER", "-e", "RABBIT_PASSWORD", "-e", "NAMESPACE=notes-tasks",
			"-e", "SERVICEDIR=", "-e", "LOG_FORMAT=short", "-e", "LOG_LEVEL=warn",
			"notes-tasks-cluster:local",
			"node", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js", "--repl",
		], { env });
		this.child.stdout.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
		this.child.stderr.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
	}

	/** What `nodes` lists, once its listing satisfies `accept`. */
	async nodesUntil(what: string, accept: (listing: string) => boolean, timeoutMs = 90_000): Promise<string> {
		return eventually(
			what,
			async () => {
				const from = this.output.length;
				this.child.stdin.write("nodes\n");
				await sleep(1000);
				const listing = this.output.slice(from);
				return accept(listing) ? listing : undefined;
			},
			timeoutMs,
		).catch(err => {
			throw new Error(`${(err as Error).message}; the REPL wrote:\n${this.output.slice(-4000)}`, { cause: err });
		});
	}

	async quit(): Promise<void> {
		if (this.child.exitCode !== null) return;
		const exited = new Promise(resolve => this.child.once("exit", resolve));
		this.child.stdin.end("quit\n");
		await Promise.race([exited, sleep(30_000)]);
		if (this.child.exitCode === null) this.child.kill("SIGKILL");
	}
}

/** Moleculer node ids in a REPL `nodes` listing. */
export const nodeIDsIn = (listing: string): string[] => [...new Set(listing.match(/swarm-\d-[a-z0-9]{25}-\d+/g) ?? [])];

/** Cuts (or restores) the lost engine's veth: the spec runs in the namespace of the bridge. */
export async function setLostEngineLink(state: "up" | "down"): Promise<void> {
	await run("ip", ["link", "set", `ntsv${LOST_ENGINE}`, state]);
}
