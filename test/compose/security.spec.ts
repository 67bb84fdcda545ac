import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { MongoClient } from "mongodb";
import { ROOT } from "../../scripts/stack-control";
import { SECRET_NAMES } from "../../scripts/secrets";
import { amqpFrom, basic, compose, containers, docker, dotEnvValue, readSecret } from "../support/compose";
import { eventually } from "../support/eventually";
import { connectToStack, type Stack } from "../support/stack";

/**
 * What the running docker-compose stack refuses, checked from outside as an attacker would try it:
 * MongoDB without a login, RabbitMQ's guest and the application user on the management API and
 * AMQP, Nginx's container reaching MongoDB, AMQP or Erlang distribution, containers without their
 * hardening, and a RabbitMQ node of the HA overlay without an Erlang cookie.
 * scripts/compose-test.sh runs it against the scaled stack, with the secrets in SECRETS_DIR.
 */

const run = promisify(execFile);
const SECRETS_DIR = process.env.SECRETS_DIR as string;
const PROJECT = process.env.COMPOSE_PROJECT_NAME as string;

/** A container's address on one of the project's networks. */
async function addressOn(container: string, network: string): Promise<string> {
	const format = `{{with index .NetworkSettings.Networks "${PROJECT}_${network}"}}{{.IPAddress}}{{end}}`;
	const address = (await docker(["inspect", "-f", format, container])).trim();
	if (!address) throw new Error(`container ${container} is not on the network ${network}`);
	return address;
}

/**
 * Opens a TCP connection to each target from inside another container's network namespace (a
 * throwaway container of the cluster image that shares it), and says for each whether it connected.
 */
async function connectFrom(container: string, targets: string[]): Promise<Record<string, string>> {
	const script = `
		const net = require("node:net");
		Promise.all(process.argv.slice(1).map(target => new Promise(resolve => {
			const [host, port] = target.split(":");
			const socket = net.connect({ host, port: Number(port), timeout: 3000 });
			const done = outcome => { socket.destroy(); resolve([target, outcome]); };
			socket.once("connect", () => done("connected"));
			socket.once("timeout", () => done("timed out"));
			socket.once("error", err => done(err.code));
		}))).then(outcomes => console.log(JSON.stringify(Object.fromEntries(outcomes))));`;
	const output = await docker(["run", "--rm", "--network", `container:${container}`, "notes-tasks-cluster:local", "node", "-e", script, ...targets]);
	return JSON.parse(output) as Record<string, string>;
}

describe("the docker-compose stack's security", () => {
	let stack: Stack;

	beforeAll(async () => {
		stack = await connectToStack();
	});

	describe("MongoDB", () => {
		const publishedUri = () => `mongodb://127.0.0.1:${process.env.COMPOSE_TEST_MONGO_PORT}/`;

		it("refuses every command but the handshake to a client that has not logged in", async () => {
			const client = new MongoClient(publishedUri(), { serverSelectionTimeoutMS: 10_000 });
			try {
				await expect(client.db(stack.dbName).collection("tasks").countDocuments()).rejects.toMatchObject({ code: 13 });
				await expect(client.db("admin").command({ listDatabases: 1 })).rejects.toMatchObject({ code: 13 });
			} finally {
				await client.close();
			}
		});

		it("refuses a wrong password, and lets the application user read the tasks", async () => {
			const wrong = new MongoClient(
				`mongodb://${dotEnvValue("MONGO_USER")}:not-the-password@127.0.0.1:${process.env.COMPOSE_TEST_MONGO_PORT}/?authSource=admin`,
				{
					serverSelectionTimeoutMS: 10_000,
				},
			);
			await expect(wrong.connect()).rejects.toMatchObject({ code: 18 });
			await wrong.close();
			const app = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 10_000 });
			try {
				expect(await app.db(stack.dbName).collection("tasks").countDocuments()).toBeGreaterThanOrEqual(0);
			} finally {
				await app.close();
			}
		});
	});

	describe("RabbitMQ", () => {
		const whoami = (authorization: string) =>
			fetch(`http://127.0.0.1:${stack.env.RABBITMQ_MANAGEMENT_PORT}/api/whoami`, { headers: { authorization }, signal: AbortSignal.timeout(10_000) });

		it("lets only the administrator into the management API: guest and the application user get 401", async () => {
			expect((await whoami(basic("guest", "guest"))).status).toBe(401);
			expect((await whoami(basic(dotEnvValue("RABBIT_USER"), readSecret("rabbit_password")))).status).toBe(401);
			const admin = await whoami(basic(dotEnvValue("RABBIT_ADMIN_USER"), readSecret("rabbit_admin_password")));
			expect(admin.status).toBe(200);
			expect(await admin.json()).toMatchObject({ name: dotEnvValue("RABBIT_ADMIN_USER") });
		});

		it("refuses guest over AMQP, and keeps the application user to the cluster's own queues", async () => {
			const [gateway] = await containers("api-flask");
			expect(await amqpFrom(gateway, "guest", "guest", "anything")).toEqual({ login: "ACCESS_REFUSED" });
			const user = dotEnvValue("RABBIT_USER");
			const password = readSecret("rabbit_password");
			expect(await amqpFrom(gateway, user, password, "not-the-clusters")).toEqual({ login: "accepted", declare: "ACCESS_REFUSED" });
			expect(await amqpFrom(gateway, user, password, `MOL-${stack.namespace}.security-check`)).toEqual({ login: "accepted", declare: "declared" });
		});
	});

	it("keeps Nginx's container off MongoDB, AMQP, Erlang distribution and epmd, while it reaches the gateways and the management proxy", async () => {
		const [nginx] = await containers("nginx");
		const [mongo] = await containers("mongo");
		const [rabbitmq] = await containers("rabbitmq");
		const [gateway] = await containers("api-flask");
		const [proxy] = await containers("management-proxy");
		const mongoAddress = await addressOn(mongo, "backend");
		const rabbitAddress = await addressOn(rabbitmq, "backend");
		const forbidden = [`${mongoAddress}:27017`, `${rabbitAddress}:5672`, `${rabbitAddress}:25672`, `${rabbitAddress}:4369`, `${rabbitAddress}:15672`];
		const allowed = [`${await addressOn(gateway, "edge")}:${dotEnvValue("FLASK_PORT")}`, `${await addressOn(proxy, "management")}:15672`];
		const outcomes = await connectFrom(nginx, [...forbidden, ...allowed]);
		for (const target of allowed) expect({ target, outcome: outcomes[target] }).toEqual({ target, outcome: "connected" });
		for (const target of forbidden) expect({ target, outcome: outcomes[target] }).toEqual({ target, outcome: expect.not.stringMatching(/^connected$/) });
		// And the names of the backend do not even resolve there.
		const byName = await connectFrom(nginx, ["mongo:27017", "rabbitmq:5672"]);
		expect(byName).toEqual({ "mongo:27017": "ENOTFOUND", "rabbitmq:5672": expect.stringMatching(/^(ENOTFOUND|EAI_AGAIN)$/) });
	}, 60_000);

	describe("containers", () => {
		/** What a service may add back to an empty capability set: Nginx's entrypoint and master only. */
		const CAP_ADD: Record<string, string[]> = { nginx: ["CHOWN", "SETGID", "SETUID"], "management-proxy": ["CHOWN", "SETGID", "SETUID"] };
		const USERS: Record<string, string> = { mongo: "mongodb", rabbitmq: "rabbitmq", "mongo-users": "node", "api-flask": "node", "worker-py": "node" };

		interface Inspected {
			Name: string;
			Config: { User: string; Labels: Record<string, string> };
			HostConfig: {
				ReadonlyRootfs: boolean;
				CapDrop: string[] | null;
				CapAdd: string[] | null;
				SecurityOpt: string[] | null;
				Memory: number;
				PidsLimit: number | null;
				PortBindings: Record<string, { HostIp: string; HostPort: string }[]> | null;
			};
		}

		let inspected: Inspected[];

		beforeAll(async () => {
			// Every container of the project, the one-shot mongo-users (exited) included.
			const ids = (await compose(["ps", "-a", "-q"])).split("\n").filter(Boolean);
			inspected = JSON.parse(await docker(["inspect", ...ids])) as Inspected[];
		});

		const serviceOf = (container: Inspected): string => container.Config.Labels["com.docker.compose.service"];

		it("run every service with a read-only root, no capability but the listed ones, no-new-privileges, and memory and pids limits", () => {
			const services = new Set(inspected.map(serviceOf));
			for (const service of [
				"mongo",
				"mongo-users",
				"rabbitmq",
				"management-proxy",
				"api-flask",
				"api-go",
				"worker-py",
				"worker-go",
				"nginx",
				"prometheus",
			]) {
				expect(services).toContain(service);
			}
			for (const container of inspected) {
				const service = serviceOf(container);
				const host = container.HostConfig;
				expect({ service, readOnly: host.ReadonlyRootfs, capDrop: host.CapDrop, capAdd: [...(host.CapAdd ?? [])].sort() }).toEqual({
					service,
					readOnly: true,
					capDrop: ["ALL"],
					capAdd: (CAP_ADD[service] ?? []).map(cap => expect.stringMatching(new RegExp(`^(CAP_)?${cap}$`))),
				});
				expect({ service, securityOpt: host.SecurityOpt }).toEqual({
					service,
					securityOpt: expect.arrayContaining([expect.stringMatching(/^no-new-privileges(:true)?$/)]),
				});
				expect({ service, memory: host.Memory > 0, pids: (host.PidsLimit ?? 0) > 0 }).toEqual({ service, memory: true, pids: true });
			}
		});

		it("run MongoDB, RabbitMQ and the Node processes as their images' unprivileged users", () => {
			for (const container of inspected) {
				const service = serviceOf(container);
				if (USERS[service])
					expect({ service, user: container.Config.User || "root (image default)" }).toEqual({
						service,
						user: expect.stringMatching(new RegExp(`^(${USERS[service]}|1000)$`)),
					});
			}
		});

		it("publish the management UI and Prometheus on the host's loopback only, and nothing of MongoDB or RabbitMQ but the test's own", () => {
			const bindings = inspected.flatMap(container =>
				Object.values(container.HostConfig.PortBindings ?? {})
					.flat()
					.map(binding => ({ service: serviceOf(container), ip: binding.HostIp })),
			);
			for (const { service, ip } of bindings.filter(binding => ["management-proxy", "prometheus"].includes(binding.service))) {
				expect({ service, ip }).toEqual({ service, ip: "127.0.0.1" });
			}
			expect(bindings.filter(binding => binding.service === "rabbitmq")).toEqual([]);
		});
	});

	describe("the HA overlay without an Erlang cookie", () => {
		const project = `${PROJECT}-no-cookie`;
		let secrets: string;

		/** docker compose with the HA overlay, in a project of its own and with the given secrets. */
		const haCompose = (args: string[]) =>
			run("docker", ["compose", ...args], {
				cwd: ROOT,
				timeout: 120_000,
				env: {
					...process.env,
					COMPOSE_PROJECT_NAME: project,
					COMPOSE_FILE: "docker-compose.yml:docker-compose.ha.yml",
					COMPOSE_PROFILES: "",
					SECRETS_DIR: secrets,
				},
			});

		beforeAll(() => {
			secrets = mkdtempSync(path.join(tmpdir(), "compose-no-cookie-"));
			for (const name of SECRET_NAMES) copyFileSync(path.join(SECRETS_DIR, name), path.join(secrets, name));
			copyFileSync(path.join(SECRETS_DIR, "mongo_admin_password.previous"), path.join(secrets, "mongo_admin_password.previous"));
		});

		afterAll(async () => {
			await haCompose(["down", "-v", "--remove-orphans"]).catch(() => undefined);
			rmSync(secrets, { recursive: true, force: true });
		});

		it("refuses to start a RabbitMQ node with an empty cookie, saying why", async () => {
			writeFileSync(path.join(secrets, "rabbit_erlang_cookie"), "\n");
			await haCompose(["up", "-d", "--no-deps", "rabbitmq-2"]);
			const [node] = (await haCompose(["ps", "-a", "-q", "rabbitmq-2"])).stdout.split("\n").filter(Boolean);
			const exitCode = await eventually(
				"rabbitmq-2 stopped",
				async () => {
					const [status, code] = (await docker(["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", node])).trim().split(" ");
					return status === "exited" || status === "restarting" ? Number(code) : undefined;
				},
				30_000,
				500,
			);
			expect(exitCode).not.toBe(0);
			const logs = await run("docker", ["logs", node]);
			expect(logs.stderr + logs.stdout).toContain("RABBIT_ERLANG_COOKIE (or RABBIT_ERLANG_COOKIE_FILE) is empty or not set");
		}, 90_000);

		it("refuses to create the stack at all when the cookie's file is missing", async () => {
			rmSync(path.join(secrets, "rabbit_erlang_cookie"));
			await haCompose(["down", "-v"]);
			await expect(haCompose(["up", "-d", "--no-deps", "rabbitmq-2"])).rejects.toThrow(/rabbit_erlang_cookie/);
		}, 90_000);
	});
});
