import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { environmentOf, loadCompose } from "../support/deployment-files";
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
