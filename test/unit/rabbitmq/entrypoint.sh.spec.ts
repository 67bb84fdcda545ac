import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { deadLetterQueueOf } from "../../../lib/queue/task-queue";
import { loadDotEnv, readText } from "../../support/deployment-files";
import { ROOT } from "../../../scripts/stack-control";

/**
 * rabbitmq/entrypoint.sh, run as the RabbitMQ containers run it, with the image's
 * docker-entrypoint.sh replaced by a stub: what it refuses, and the cookie and definitions it writes.
 */

interface Definitions {
	vhosts: { name: string }[];
	users: { name: string; password_hash: string; hashing_algorithm: string; tags: string }[];
	permissions: { user: string; vhost: string; configure: string; write: string; read: string }[];
}

const dotEnv = loadDotEnv();
let dir: string;

function secretFile(name: string, value: string): string {
	const file = path.join(dir, name);
	writeFileSync(file, value);
	return file;
}

function runEntrypoint(overrides: Record<string, string> = {}) {
	const env: Record<string, string> = {
		PATH: `${dir}:${process.env.PATH}`,
		HOME: dir,
		RABBIT_DEFINITIONS_FILE: path.join(dir, "definitions.json"),
		RABBIT_ERLANG_COOKIE_FILE: secretFile("cookie", "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"),
		RABBIT_ADMIN_USER: dotEnv.RABBIT_ADMIN_USER,
		RABBIT_ADMIN_PASSWORD_FILE: secretFile("admin", "admin-secret\n"),
		RABBIT_USER: dotEnv.RABBIT_USER,
		RABBIT_PASSWORD_FILE: secretFile("app", "app-secret\n"),
		RABBIT_VHOST: dotEnv.RABBIT_VHOST,
		RABBIT_QUEUE: dotEnv.RABBIT_QUEUE,
		NAMESPACE: dotEnv.NAMESPACE,
		...overrides,
	};
	return spawnSync("bash", [path.join(ROOT, "rabbitmq/entrypoint.sh"), "rabbitmq-server"], { env, encoding: "utf8" });
}

/** RabbitMQ's rabbit_password_hashing_sha256 check of a password against a stored hash. */
function matches(hash: string, password: string): boolean {
	const bytes = Buffer.from(hash, "base64");
	const digest = createHash("sha256")
		.update(Buffer.concat([bytes.subarray(0, 4), Buffer.from(password)]))
		.digest();
	return bytes.length === 36 && digest.equals(bytes.subarray(4));
}

describe("rabbitmq/entrypoint.sh", () => {
	beforeEach(() => {
		dir = mkdtempSync(path.join(tmpdir(), "rabbitmq-entrypoint-"));
		writeFileSync(path.join(dir, "docker-entrypoint.sh"), '#!/bin/sh\necho "image entrypoint: $*"\n');
		chmodSync(path.join(dir, "docker-entrypoint.sh"), 0o755);
	});
	afterEach(() => rmSync(dir, { recursive: true, force: true }));

	it("refuses to start without an Erlang cookie, or with a short one, and runs nothing", () => {
		for (const overrides of [{ RABBIT_ERLANG_COOKIE_FILE: "" }, { RABBIT_ERLANG_COOKIE_FILE: secretFile("empty", "\n") }]) {
			const result = runEntrypoint(overrides);
			expect(result.status).toBe(1);
			expect(result.stderr).toContain("RABBIT_ERLANG_COOKIE (or RABBIT_ERLANG_COOKIE_FILE) is empty or not set");
			expect(result.stdout).not.toContain("image entrypoint");
		}
		const short = runEntrypoint({ RABBIT_ERLANG_COOKIE_FILE: secretFile("short", "abc") });
		expect(short.status).toBe(1);
		expect(short.stderr).toContain("the Erlang cookie must be 20 to 255 letters or digits");
		const missing = runEntrypoint({ RABBIT_ADMIN_PASSWORD_FILE: path.join(dir, "absent") });
		expect(missing.stderr).toContain("RABBIT_ADMIN_PASSWORD_FILE names");
	});

	it("writes the cookie for its owner only, then runs the image's entrypoint with the command", () => {
		const result = runEntrypoint();
		expect(result.stderr).toBe("");
		expect(result.stdout.trim()).toBe("image entrypoint: rabbitmq-server");
		expect(readFileSync(path.join(dir, ".erlang.cookie"), "utf8")).toBe("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
		expect(statSync(path.join(dir, ".erlang.cookie")).mode & 0o777).toBe(0o400);
		// A second start replaces the read-only file of the first.
		expect(runEntrypoint({ RABBIT_ERLANG_COOKIE_FILE: secretFile("cookie2", "ZYXWVUTSRQPONMLKJIHGFEDCBA") }).status).toBe(0);
		expect(readFileSync(path.join(dir, ".erlang.cookie"), "utf8")).toBe("ZYXWVUTSRQPONMLKJIHGFEDCBA");
	});

	it("defines the administrator and the application user with the current passwords, at the path security.conf loads", () => {
		expect(readText("rabbitmq/security.conf")).toMatch(/^load_definitions = \/tmp\/notes-tasks-definitions\.json$/m);
		expect(readText("rabbitmq/entrypoint.sh")).toContain("${RABBIT_DEFINITIONS_FILE:-/tmp/notes-tasks-definitions.json}");
		expect(runEntrypoint().status).toBe(0);
		const definitions = JSON.parse(readFileSync(path.join(dir, "definitions.json"), "utf8")) as Definitions;
		expect(definitions.vhosts).toEqual([{ name: dotEnv.RABBIT_VHOST }]);
		const [admin, app] = definitions.users;
		expect(admin).toMatchObject({ name: dotEnv.RABBIT_ADMIN_USER, tags: "administrator", hashing_algorithm: "rabbit_password_hashing_sha256" });
		expect(app).toMatchObject({ name: dotEnv.RABBIT_USER, tags: "" });
		expect([matches(admin.password_hash, "admin-secret"), matches(app.password_hash, "app-secret"), matches(app.password_hash, "admin-secret")]).toEqual([
			true,
			true,
			false,
		]);
		expect(statSync(path.join(dir, "definitions.json")).mode & 0o077).toBe(0);
	});

	it("lets the application user at the cluster's queues and Moleculer's, and nothing else", () => {
		expect(runEntrypoint().status).toBe(0);
		const definitions = JSON.parse(readFileSync(path.join(dir, "definitions.json"), "utf8")) as Definitions;
		const permission = definitions.permissions.find(entry => entry.user === dotEnv.RABBIT_USER);
		const allows = (kind: "configure" | "write" | "read", resource: string) => new RegExp(permission?.[kind] ?? "^$").test(resource);
		const queue = dotEnv.RABBIT_QUEUE;
		const ours = [queue, deadLetterQueueOf(queue), `MOL-${dotEnv.NAMESPACE}.REQ.node-1`, `MOL-${dotEnv.NAMESPACE}.EVENT`];
		for (const resource of ours)
			for (const kind of ["configure", "write", "read"] as const)
				expect({ kind, resource, allowed: allows(kind, resource) }).toEqual({ kind, resource, allowed: true });
		expect(allows("write", "amq.default")).toBe(true);
		const theirs = [`${queue}x`, `x${queue}`, `MOL-other.REQ.node-1`, `MOL-${dotEnv.NAMESPACE}`, "amq.default", "amq.topic"];
		for (const resource of theirs)
			expect({ resource, allowed: allows("configure", resource) || allows("read", resource) }).toEqual({ resource, allowed: false });
		expect(definitions.permissions.find(entry => entry.user === dotEnv.RABBIT_ADMIN_USER)).toMatchObject({ configure: ".*", write: ".*", read: ".*" });
	});

	it("refuses names that would not be plain in JSON and a regular expression", () => {
		const result = runEntrypoint({ NAMESPACE: 'a"b' });
		expect(result.status).toBe(1);
		expect(result.stderr).toContain("NAMESPACE must be letters, digits");
		expect(runEntrypoint({ RABBIT_USER: dotEnv.RABBIT_ADMIN_USER }).stderr).toContain("RABBIT_ADMIN_USER and RABBIT_USER must differ");
	});
});
