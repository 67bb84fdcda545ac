import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from "node:net";
import { BSON, type Document } from "mongodb";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import {
	composeService,
	durationSeconds,
	environmentOf,
	loadCompose,
	loadDotEnv,
	publishedPorts,
	readText,
	type ComposeService,
	RUNNER_COMMAND,
} from "../support/deployment-files";
import { templateVariables } from "../../scripts/nginx-template";
import { spawnTracked } from "../support/child-processes";
import { KEEPS_PREVIOUS, SECRET_NAMES } from "../../scripts/secrets";
import { ROOT } from "../../scripts/stack-control";

/**
 * docker-compose.yml, checked from the file (no Docker engine needed): what SPEC "docker-compose"
 * promises, scale safety, health and start order, and agreement with .env and the Nginx template.
 * npm run test:compose runs it on a real engine.
 */

const dotEnv = loadDotEnv();
const compose = loadCompose(dotEnv);
const services = compose.services;

const ROLES = ["api-flask", "api-go", "worker-py", "worker-go"] as const;
const GATEWAYS = { "api-flask": "FLASK_PORT", "api-go": "GO_PORT" } as const;
const WORKERS = ["worker-py", "worker-go"] as const;
const BACKING = ["mongo", "rabbitmq"] as const;
/** moleculer.config.ts: tracking.shutdownTimeout, the longest a service waits for running calls. */
const SHUTDOWN_TIMEOUT_SECONDS = 10;

const service = (name: string): ComposeService => composeService(compose, name);
const nginxEnv = (): Record<string, string> => environmentOf(service("nginx"));

function hostPort(upstream: string): { host: string; port: number } {
	const [host, port] = upstream.split(":");
	return { host, port: Number(port) };
}

describe("docker-compose.yml: services", () => {
	it("uses the Compose v2 format, without the obsolete version key", () => {
		expect(compose.version).toBeUndefined();
	});

	it("defines exactly the SPEC's services, plus the REPL and Prometheus under profiles", () => {
		const always = Object.keys(services).filter(name => !services[name].profiles?.length);
		expect(always.sort()).toEqual(["api-flask", "api-go", "management-proxy", "mongo", "mongo-users", "nginx", "rabbitmq", "worker-go", "worker-py"]);
		const profiled = Object.keys(services).filter(name => services[name].profiles?.length);
		expect(profiled.sort()).toEqual(["prometheus", "repl"]);
	});

	it("keeps MongoDB and RabbitMQ on named volumes", () => {
		expect(service("mongo").image).toBe("mongo:7");
		expect(service("mongo").volumes).toContain("mongo-data:/data/db");
		expect(service("rabbitmq").image).toBe("rabbitmq:4-management");
		expect(service("rabbitmq").volumes).toContain("rabbitmq-data:/var/lib/rabbitmq");
		expect(Object.keys(compose.volumes ?? {}).sort()).toEqual(["mongo-config", "mongo-data", "prometheus-data", "rabbitmq-data"]);
	});

	it("gives RabbitMQ a fixed host name, since its data directory is named after it", () => {
		expect(service("rabbitmq").hostname).toBe("rabbitmq");
	});

	it("gives RabbitMQ the users the nodes log in with, from the secrets the nodes read", () => {
		const rabbit = environmentOf(service("rabbitmq"));
		expect(rabbit).toMatchObject({
			RABBIT_USER: dotEnv.RABBIT_USER,
			RABBIT_ADMIN_USER: dotEnv.RABBIT_ADMIN_USER,
			RABBIT_PASSWORD_FILE: dotEnv.RABBIT_PASSWORD_FILE,
		});
		expect(rabbit.RABBITMQ_DEFAULT_USER ?? rabbit.RABBITMQ_DEFAULT_PASS).toBeUndefined();
		for (const role of ROLES) expect(service(role).secrets).toEqual(expect.arrayContaining(["rabbit_password", "mongo_password"]));
		expect(service("rabbitmq").secrets?.sort()).toEqual(["rabbit_admin_password", "rabbit_erlang_cookie", "rabbit_password"]);
	});

	it("declares every secret of `npm run secrets` as a file of SECRETS_DIR", () => {
		const declared = Object.entries(compose.secrets ?? {}).map(([name, { file }]) => [name, file]);
		const expected = [
			...SECRET_NAMES.map(name => [name, `${dotEnv.SECRETS_DIR}/${name}`]),
			[`${KEEPS_PREVIOUS}_previous`, `${dotEnv.SECRETS_DIR}/${KEEPS_PREVIOUS}.previous`],
		];
		expect(declared.sort()).toEqual(expected.sort());
	});

	it.each(ROLES)("runs %s from the one image with the tasks store beside it", role => {
		const node = service(role);
		expect(node.image).toBe(service("api-flask").image);
		expect(node.build).toBe(".");
		expect(node.env_file).toBe(".env");
		expect(node.command).toBeUndefined();
		expect(environmentOf(node).SERVICES).toBe(`${role},tasks`);
	});

	it("has a service file for every Moleculer service a container runs", () => {
		const names = ROLES.flatMap(role => environmentOf(service(role)).SERVICES.split(","));
		for (const name of new Set(names)) {
			expect(existsSync(path.join(ROOT, "services", `${name}.service.ts`))).toBe(true);
		}
	});
});

describe("docker-compose.yml: scaling", () => {
	it("names no container and no host, so replicas never collide", () => {
		for (const [name, definition] of Object.entries(services)) {
			expect({ name, container_name: definition.container_name }).toEqual({ name, container_name: undefined });
		}
		for (const role of ROLES) expect({ role, hostname: service(role).hostname }).toEqual({ role, hostname: undefined });
	});

	it("leaves NODE_ID unset, so each container is <hostname>-<pid>", () => {
		expect(dotEnv.NODE_ID).toBeUndefined();
		for (const [name, definition] of Object.entries(services)) {
			expect({ name, NODE_ID: environmentOf(definition).NODE_ID }).toEqual({ name, NODE_ID: undefined });
		}
	});

	it("publishes host ports only on nginx, the RabbitMQ management UI (its proxy) and Prometheus", () => {
		const publishing = Object.entries(services)
			.filter(([, definition]) => definition.ports?.length)
			.map(([name, definition]) => ({ name, ports: publishedPorts(definition) }));
		expect(publishing).toEqual([
			{ name: "management-proxy", ports: [{ host: Number(dotEnv.RABBITMQ_MANAGEMENT_HOST_PORT), container: 15672 }] },
			{ name: "nginx", ports: [{ host: Number(dotEnv.NGINX_HOST_PORT), container: Number(dotEnv.NGINX_PORT) }] },
			{ name: "prometheus", ports: [{ host: Number(dotEnv.PROMETHEUS_HOST_PORT), container: 9090 }] },
		]);
	});

	it("takes the published host ports and addresses from .env", () => {
		const raw = readText("docker-compose.yml");
		expect(raw).toContain('"${NGINX_HOST_PORT}:${NGINX_PORT}"');
		expect(raw).toContain('"${RABBITMQ_MANAGEMENT_HOST_IP}:${RABBITMQ_MANAGEMENT_HOST_PORT}:15672"');
		expect(raw).toContain('"${PROMETHEUS_HOST_IP}:${PROMETHEUS_HOST_PORT}:9090"');
	});
});

describe("docker-compose.yml: health and start order", () => {
	it.each([...BACKING, ...ROLES])("%s has a healthcheck", name => {
		const check = service(name).healthcheck;
		expect(check?.test[0]).toBe("CMD");
		expect(check?.interval).toBeDefined();
		expect(check?.retries).toBeGreaterThan(0);
	});

	it("checks MongoDB with a wire-protocol ping in bash (no mongosh) and RabbitMQ with rabbitmq-diagnostics", () => {
		expect(service("mongo").healthcheck?.test.slice(0, 3)).toEqual(["CMD", "bash", "-c"]);
		expect(service("mongo").healthcheck?.test.join(" ")).not.toContain("mongosh");
		expect(service("rabbitmq").healthcheck?.test.slice(0, 2)).toEqual(["CMD", "rabbitmq-diagnostics"]);
	});

	describe("the MongoDB healthcheck, run against a stand-in server", () => {
		let server: NetServer;
		let requests: Document[] = [];
		let ok = 1;

		/** An OP_MSG (opcode 2013) with one body section holding `document`. */
		function opMsg(document: Document, responseTo: number): Buffer {
			const body = BSON.serialize(document);
			const header = Buffer.alloc(21);
			header.writeInt32LE(21 + body.length, 0);
			header.writeInt32LE(7, 4);
			header.writeInt32LE(responseTo, 8);
			header.writeInt32LE(2013, 12);
			return Buffer.concat([header, body]);
		}

		beforeAll(async () => {
			server = createNetServer(socket => {
				socket.once("data", (data: Buffer) => {
					expect(data.readInt32LE(0)).toBe(data.length);
					expect(data.readInt32LE(12)).toBe(2013);
					expect(data[20]).toBe(0);
					requests.push(BSON.deserialize(data.subarray(21)));
					socket.write(opMsg({ ok: new BSON.Double(ok) }, data.readInt32LE(4)));
				});
				socket.on("error", () => undefined);
			});
			await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
		});
		afterAll(() => new Promise(resolve => server.close(resolve)));

		function runCheck(port: number): Promise<number | null> {
			const [, command, flag, script] = service("mongo").healthcheck?.test ?? [];
			expect(script).toContain("/dev/tcp/127.0.0.1/27017");
			return new Promise((resolve, reject) => {
				spawnTracked(command, [flag, script.replace("/27017", `/${port}`)], { stdio: "ignore" })
					.on("error", reject)
					.on("exit", resolve);
			});
		}

		it("sends {ping: 1} to admin; healthy on {ok: 1}, unhealthy on {ok: 0} or no server", async () => {
			const { port } = server.address() as AddressInfo;
			requests = [];
			ok = 1;
			expect(await runCheck(port)).toBe(0);
			expect(requests).toEqual([{ ping: 1, $db: "admin" }]);
			ok = 0;
			expect(await runCheck(port)).toBe(1);
			expect(await runCheck(1)).toBe(1);
		});
	});

	it.each(ROLES)("starts %s once RabbitMQ and MongoDB are healthy and mongo-users has set the application user, and restarts it", role => {
		const node = service(role);
		expect(node.depends_on).toEqual({
			rabbitmq: { condition: "service_healthy" },
			mongo: { condition: "service_healthy" },
			"mongo-users": { condition: "service_completed_successfully" },
		});
		expect(node.restart).toBe("unless-stopped");
	});

	it.each(ROLES)("gives %s a stop grace period longer than Moleculer's drain", role => {
		const grace = service(role).stop_grace_period;
		expect(grace).toBeDefined();
		expect(durationSeconds(grace as string)).toBeGreaterThanOrEqual(SHUTDOWN_TIMEOUT_SECONDS + 10);
	});

	it("checks Nginx through both gateways' liveness, with a wget that the alpine image has", () => {
		const check = service("nginx").healthcheck;
		expect(check?.test[0]).toBe("CMD-SHELL");
		for (const gateway of ["flask", "go"]) {
			expect(check?.test[1]).toContain(`wget -q -O /dev/null http://127.0.0.1:${dotEnv.NGINX_PORT}/${gateway}/health/live`);
		}
		expect(check?.retries).toBeGreaterThan(0);
	});

	it("starts nginx once both gateways are healthy", () => {
		const dependsOn = service("nginx").depends_on ?? {};
		expect(dependsOn["api-flask"]).toEqual({ condition: "service_healthy" });
		expect(dependsOn["api-go"]).toEqual({ condition: "service_healthy" });
	});

	it("routes the gateways' healthchecks to the readiness endpoint that the gateway serves", () => {
		expect(readText("mixins/task-gateway.mixin.ts")).toContain('"GET /health/ready"');
		for (const [gateway, portVariable] of Object.entries(GATEWAYS)) {
			expect(service(gateway).healthcheck?.test.join(" ")).toContain(`process.env.${portVariable} + '/health/ready'`);
		}
		for (const worker of WORKERS) {
			expect(service(worker).healthcheck?.test.join(" ")).toContain("process.env.METRICS_PORT + '/metrics'");
		}
	});

	describe("healthcheck commands, run against a stand-in endpoint", () => {
		let server: Server;
		let status = 200;
		let requested: string[] = [];

		beforeAll(async () => {
			server = createServer((req, res) => {
				requested.push(req.url ?? "");
				res.writeHead(status).end();
			});
			await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
		});
		afterAll(() => new Promise(resolve => server.close(resolve)));

		/** Runs a healthcheck's `node -e` with the container's variables pointed at the stand-in. */
		function runCheck(name: string, portVariable: string, port: number): Promise<number | null> {
			const [, command, ...args] = service(name).healthcheck?.test ?? [];
			expect(command).toBe("node");
			const env = { PATH: process.env.PATH, ...dotEnv, [portVariable]: String(port) };
			return new Promise((resolve, reject) => {
				spawnTracked(process.execPath, args, { env, stdio: "ignore" }).on("error", reject).on("exit", resolve);
			});
		}

		const checks = [
			...Object.entries(GATEWAYS).map(([name, portVariable]) => [name, portVariable, "/health/ready"]),
			...WORKERS.map(name => [name, "METRICS_PORT", "/metrics"]),
		];

		it.each(checks)("%s: healthy on 200 from %s %s, unhealthy on 503 or no answer", async (name, portVariable, url) => {
			const { port } = server.address() as AddressInfo;
			requested = [];
			status = 200;
			expect(await runCheck(name, portVariable, port)).toBe(0);
			expect(requested).toEqual([url]);
			status = 503;
			expect(await runCheck(name, portVariable, port)).toBe(1);
			expect(await runCheck(name, portVariable, 1)).toBe(1);
		});
	});
});

describe("docker-compose.yml: nginx", () => {
	it("pins an official nginx image that supports `server ... resolve` (>= 1.27.3)", () => {
		const match = /^nginx:(\d+)\.(\d+)\.(\d+)(-[a-z0-9-]+)?$/.exec(service("nginx").image ?? "");
		expect(match).not.toBeNull();
		const [major, minor, patch] = (match as RegExpExecArray).slice(1, 4).map(Number);
		expect(major * 1e6 + minor * 1e3 + patch).toBeGreaterThanOrEqual(1_027_003);
	});

	it("mounts the template directory read-only", () => {
		expect(service("nginx").volumes).toContain("./nginx/templates:/etc/nginx/templates:ro");
	});

	it("defines every variable of the template, and only those", () => {
		expect(Object.keys(nginxEnv()).sort()).toEqual(templateVariables());
	});

	it("re-resolves the gateways through Docker's DNS", () => {
		expect(nginxEnv()).toMatchObject({ UPSTREAM_RESOLVE: "resolve", NGINX_RESOLVER: "127.0.0.11" });
		// `resolve` needs a shared-memory zone in each upstream.
		const template = readText("nginx/templates/default.conf.template");
		const upstreams = [...template.matchAll(/^upstream\s+(\w+)\s*\{([\s\S]*?)^\}/gm)];
		expect(upstreams.map(upstream => upstream[1])).toEqual(["api_flask", "api_go", "rabbitmq_management"]);
		for (const [, name, body] of upstreams) {
			expect({ name, zone: /^\s*zone\s+\w+\s+\w+;/m.test(body) }).toEqual({ name, zone: true });
			expect({ name, server: /server\s+\$\{\w+\}\s+\$\{UPSTREAM_RESOLVE\};/.test(body) }).toEqual({ name, server: true });
		}
	});

	it("points at the compose services on the ports from .env", () => {
		const env = nginxEnv();
		expect(hostPort(env.FLASK_UPSTREAM)).toEqual({ host: "api-flask", port: Number(dotEnv.FLASK_PORT) });
		expect(hostPort(env.GO_UPSTREAM)).toEqual({ host: "api-go", port: Number(dotEnv.GO_PORT) });
		expect(hostPort(env.RABBITMQ_MANAGEMENT_UPSTREAM)).toEqual({ host: "management-proxy", port: 15672 });
		expect(environmentOf(service("management-proxy")).RABBITMQ_MANAGEMENT_UPSTREAM).toBe("rabbitmq:15672");
		for (const upstream of [env.FLASK_UPSTREAM, env.GO_UPSTREAM, env.RABBITMQ_MANAGEMENT_UPSTREAM]) {
			expect(Object.keys(services)).toContain(hostPort(upstream).host);
		}
		expect(env.NGINX_PORT).toBe(dotEnv.NGINX_PORT);
	});

	it("limits request bodies to the same MAX_BODY_BYTES as the gateways", () => {
		expect(nginxEnv().MAX_BODY_BYTES).toBe(dotEnv.MAX_BODY_BYTES);
		for (const role of ROLES) expect(environmentOf(service(role)).MAX_BODY_BYTES).toBeUndefined();
	});

	it("leaves the gateways' ports to .env alone", () => {
		for (const role of ROLES) {
			const env = environmentOf(service(role));
			expect({ role, FLASK_PORT: env.FLASK_PORT, GO_PORT: env.GO_PORT }).toEqual({ role, FLASK_PORT: undefined, GO_PORT: undefined });
		}
	});
});

describe("docker-compose.yml: networks and hardening", () => {
	const networksOf = (name: string) => service(name).networks ?? [];

	it("keeps Nginx off the backend network, which is internal, and the backing services off the edge", () => {
		expect(compose.networks?.backend).toEqual({ internal: true });
		expect(networksOf("nginx").sort()).toEqual(["edge", "management"]);
		for (const gateway of Object.keys(GATEWAYS)) expect(networksOf(gateway).sort()).toEqual(["backend", "edge"]);
		for (const name of [...WORKERS, ...BACKING, "mongo-users"]) expect({ name, networks: networksOf(name) }).toEqual({ name, networks: ["backend"] });
		expect(networksOf("management-proxy").sort()).toEqual(["backend", "management"]);
	});

	it("runs every service read-only, without capabilities (Nginx's entrypoint and master get three back), without new privileges, with memory and pids limits", () => {
		for (const [name, definition] of Object.entries(services)) {
			const limits = definition.deploy?.resources?.limits;
			expect({ name, readOnly: definition.read_only, capDrop: definition.cap_drop, noNewPrivileges: definition.security_opt }).toEqual({
				name,
				readOnly: true,
				capDrop: ["ALL"],
				noNewPrivileges: ["no-new-privileges:true"],
			});
			expect({ name, memory: limits?.memory, pids: limits?.pids }).toEqual({
				name,
				memory: expect.stringMatching(/^\d+m$|^\d+g$/),
				pids: expect.any(Number),
			});
			const expectedCaps = ["nginx", "management-proxy"].includes(name) ? ["CHOWN", "SETGID", "SETUID"] : undefined;
			expect({ name, capAdd: definition.cap_add }).toEqual({ name, capAdd: expectedCaps });
		}
	});

	it("runs MongoDB and RabbitMQ as their images' own users, so that their entrypoints need no capability", () => {
		expect(service("mongo").user).toBe("mongodb");
		expect(service("rabbitmq").user).toBe("rabbitmq");
	});
});

describe("docker-compose.yml: REPL", () => {
	const repl = () => service("repl");

	it("is an interactive tool, started only by `docker compose run --rm repl`", () => {
		expect(repl().profiles).toEqual(["tools"]);
		expect(repl()).toMatchObject({ stdin_open: true, tty: true });
		expect(repl().ports).toBeUndefined();
		expect(repl().restart).toBeUndefined();
	});

	it("joins the cluster from the same image, runs no service of its own and opens the REPL", () => {
		expect(repl().image).toBe(service("api-flask").image);
		expect(repl().env_file).toBe(".env");
		expect(repl().depends_on?.rabbitmq).toEqual({ condition: "service_healthy" });
		const env = environmentOf(repl());
		expect(env.SERVICES).toBeUndefined();
		// The image sets SERVICEDIR; with it and no SERVICES, moleculer-runner would load every service.
		expect(env.SERVICEDIR).toBe("");
		expect(repl().command).toEqual([...RUNNER_COMMAND, "--repl"]);
	});
});

describe("docker-compose.yml: the monitoring profile", () => {
	const prometheus = () => service("prometheus");
	const config = () =>
		parseYaml(readText("prometheus/prometheus.yml")) as {
			scrape_configs: { job_name: string; dns_sd_configs: { names: string[]; type: string; port: number }[] }[];
		};

	it("runs Prometheus only with `--profile monitoring`, its config from prometheus/, its data on a volume", () => {
		expect(prometheus().profiles).toEqual(["monitoring"]);
		expect(prometheus().volumes).toEqual(["./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro", "prometheus-data:/prometheus"]);
		expect(prometheus().command).toContain("--config.file=/etc/prometheus/prometheus.yml");
	});

	it("finds every replica of every role by DNS (type A) on METRICS_PORT", () => {
		const [job] = config().scrape_configs;
		const [discovery] = job.dns_sd_configs;
		expect(discovery.type).toBe("A");
		expect(discovery.port).toBe(Number(dotEnv.METRICS_PORT));
		expect([...discovery.names].sort()).toEqual([...ROLES].sort());
	});
});

describe("docker-compose.yml: the management proxy", () => {
	it("defines every variable of its template, and only those, and proxies with the request's own URI", () => {
		const template = readText("rabbitmq/management-proxy.conf.template");
		const proxy = service("management-proxy");
		expect(Object.keys(environmentOf(proxy)).sort()).toEqual(templateVariables(template));
		expect(proxy.volumes).toEqual(["./rabbitmq/management-proxy.conf.template:/etc/nginx/templates/management-proxy.conf.template:ro"]);
		// A variable without a URI part: Nginx passes the request's URI unchanged, %2F (the default vhost) included.
		expect(template).toMatch(/set \$rabbitmq_management http:\/\/\$\{RABBITMQ_MANAGEMENT_UPSTREAM\};\s+proxy_pass \$rabbitmq_management;/);
	});
});
