import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { environmentOf, loadCompose } from "../support/deployment-files";
import { clientAt, post, request } from "../support/edge-client";
import { eventually } from "../support/eventually";
import { renderNginxTemplate } from "../../scripts/nginx-template";

/**
 * The Nginx template rendered with the docker-compose values, checked by a real `nginx -t`.
 *
 * Debian's nginx (1.22) stands in for the compose image (>= 1.27.3), so two things differ:
 * - it does not know `server ... resolve`, so UPSTREAM_RESOLVE is rendered empty here (the unit
 *   spec checks that compose sets it and pins a version that knows it);
 * - `nginx -t` resolves upstream host names, and the compose names (api-flask, ...) exist only on
 *   Docker's network: nginx runs in a private mount namespace whose /etc/hosts has them.
 */

const NGINX = "/usr/sbin/nginx";
const composeEnv = environmentOf(loadCompose().services.nginx);
const upstreamHosts = [composeEnv.FLASK_UPSTREAM, composeEnv.GO_UPSTREAM, composeEnv.RABBITMQ_MANAGEMENT_UPSTREAM].map(upstream => upstream.split(":")[0]);

let dir: string;

/** Runs a command with `dir/hosts` bind-mounted over /etc/hosts, for it alone. */
function withComposeHosts(command: string[]) {
	return spawnSync(
		"unshare",
		["--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$1" /etc/hosts && shift && exec "$@"', "sh", path.join(dir, "hosts"), ...command],
		{ encoding: "utf8", timeout: 20_000 },
	);
}

/** `nginx -t` on the template rendered with `env`, under a main nginx.conf that keeps every path in `dir`. */
function nginxTest(env: Record<string, string>) {
	writeFileSync(path.join(dir, "conf.d", "default.conf"), renderNginxTemplate(env));
	return withComposeHosts([NGINX, "-t", "-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log")]);
}

beforeAll(() => {
	dir = mkdtempSync(path.join(os.tmpdir(), "nginx-config-"));
	mkdirSync(path.join(dir, "conf.d"));
	writeFileSync(path.join(dir, "hosts"), `127.0.0.1 localhost\n127.0.0.1 ${upstreamHosts.join(" ")}\n`);
	// Like the image's own nginx.conf: the rendered template is included inside http {}.
	writeFileSync(
		path.join(dir, "nginx.conf"),
		[
			`pid ${dir}/nginx.pid;`,
			`error_log ${dir}/error.log;`,
			"events {}",
			"http {",
			"    access_log off;",
			...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map(kind => `    ${kind}_temp_path ${dir}/${kind}_temp;`),
			`    include ${dir}/conf.d/*.conf;`,
			"}",
			"",
		].join("\n"),
	);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("Nginx configuration of docker-compose", () => {
	it("can give nginx the compose host names (needs root for unshare --mount)", () => {
		const result = withComposeHosts(["getent", "hosts", ...upstreamHosts]);
		if (result.error || result.status !== 0) {
			throw new Error(
				"Could not run a command with a private /etc/hosts, so `nginx -t` cannot resolve the compose " +
					`upstreams. unshare --mount needs root or CAP_SYS_ADMIN. ${result.error?.message ?? ""}${result.stderr}`,
			);
		}
		expect(result.stdout.trim().split("\n")).toHaveLength(upstreamHosts.length);
	});

	it("passes nginx -t with the compose values", () => {
		const result = nginxTest({ ...composeEnv, UPSTREAM_RESOLVE: "" });
		expect({ status: result.status, output: result.stderr }).toEqual({ status: 0, output: expect.stringContaining("test is successful") });
	});

	it("is really checked: this nginx refuses the `resolve` parameter that compose's newer one needs", () => {
		const result = nginxTest(composeEnv);
		expect(result.status).not.toBe(0);
		expect(result.stderr).toMatch(/invalid parameter "resolve"/);
	});
});

/**
 * The template's address lists in a running Nginx of its own (on a free port, in front of a
 * stub upstream): RABBITMQ_UI_ALLOW and NGINX_LIMIT_EXEMPT name whole addresses, so 127.0.0.10
 * in a list does not let 127.0.0.1 in. Clients on other loopback addresses stand for other hosts.
 */
describe("the edge's address lists in a running Nginx", () => {
	let edgeDir: string;
	let upstream: http.Server;
	let nginx: ChildProcess;
	let baseUrl: string;
	const agents: http.Agent[] = [];
	const from = (address: string) => {
		const agent = clientAt(address);
		agents.push(agent);
		return agent;
	};

	beforeAll(async () => {
		edgeDir = mkdtempSync(path.join(os.tmpdir(), "nginx-edge-"));
		upstream = http.createServer((req, res) => req.resume().on("end", () => res.writeHead(200, { "Content-Type": "application/json" }).end("{}")));
		await new Promise<void>(resolve => upstream.listen(0, "127.0.0.1", resolve));
		const upstreamAt = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
		const port = await freePort();
		baseUrl = `http://127.0.0.1:${port}`;
		writeFileSync(
			path.join(edgeDir, "default.conf"),
			renderNginxTemplate({
				NGINX_PORT: String(port),
				FLASK_UPSTREAM: upstreamAt,
				GO_UPSTREAM: upstreamAt,
				RABBITMQ_MANAGEMENT_UPSTREAM: upstreamAt,
				NGINX_RESOLVER: "127.0.0.1",
				UPSTREAM_RESOLVE: "",
				MAX_BODY_BYTES: "16384",
				NGINX_ACCESS_LOG: path.join(edgeDir, "access.log"),
				RABBITMQ_UI_ALLOW: "127.0.0.10,127.0.0.3",
				NGINX_POST_RATE: "1",
				NGINX_POST_BURST: "1",
				NGINX_POST_CONCURRENCY: "10",
				NGINX_LIST_RATE: "1",
				NGINX_LIST_BURST: "1",
				NGINX_LIST_QUEUE: "2",
				NGINX_LIST_TOTAL_RATE: "1",
				NGINX_LIST_TOTAL_QUEUE: "2",
				NGINX_LIMIT_EXEMPT: "127.0.0.40, 127.0.0.4",
				NGINX_CLIENT_TIMEOUT: "10",
			}),
		);
		writeFileSync(
			path.join(edgeDir, "nginx.conf"),
			[
				`pid ${edgeDir}/nginx.pid;`,
				"events {}",
				"http {",
				...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map(kind => `    ${kind}_temp_path ${edgeDir}/${kind}_temp;`),
				`    include ${edgeDir}/default.conf;`,
				"}",
				"",
			].join("\n"),
		);
		nginx = spawn(NGINX, ["-p", edgeDir, "-c", path.join(edgeDir, "nginx.conf"), "-e", path.join(edgeDir, "error.log"), "-g", "daemon off;"], {
			stdio: "ignore",
		});
		await eventually("the test's Nginx listening", () =>
			fetch(`${baseUrl}/flask/health/live`).then(
				() => true,
				() => undefined,
			),
		);
	});

	afterAll(async () => {
		agents.forEach(agent => agent.destroy());
		if (nginx && nginx.exitCode === null) {
			nginx.kill("SIGTERM");
			await once(nginx, "exit");
		}
		await new Promise(resolve => upstream?.close(resolve));
		rmSync(edgeDir, { recursive: true, force: true });
	});

	it.each([
		["127.0.0.3", 200],
		["127.0.0.10", 200],
		["127.0.0.1", 403],
		["127.0.0.100", 403],
		["127.0.0.31", 403],
	])("answers /rabbitmq/ to %s with %d", async (address, status) => {
		expect((await request(from(address), `${baseUrl}/rabbitmq/api/overview`)).status).toBe(status);
	});

	it.each([
		["127.0.0.4", "exempt", 0],
		["127.0.0.41", "limited", 2],
	])("limits the POSTs of %s (%s)", async (address, _case, refusedAtLeast) => {
		const agent = from(address);
		const statuses: number[] = [];
		for (let i = 0; i < 4; i++) statuses.push((await post(agent, `${baseUrl}/flask/tasks`, "{}")).status);
		expect(statuses.filter(status => status === 429).length).toBeGreaterThanOrEqual(refusedAtLeast);
		if (refusedAtLeast === 0) expect(statuses).toEqual([200, 200, 200, 200]);
	});
});

function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = net.createServer().listen(0, "127.0.0.1", () => {
			const { port } = server.address() as AddressInfo;
			server.close(() => resolve(port));
		});
		server.on("error", reject);
	});
}
