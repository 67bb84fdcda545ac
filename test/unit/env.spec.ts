import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "../../lib/config";
import { configEnvNames, loadCompose, loadDotEnv, readText } from "../support/deployment-files";

/** .env: the settings compose hands every container, and their agreement with lib/config.ts. */

const dotEnv = loadDotEnv();
/** What lib/config.ts reads through secret(): NAME or NAME_FILE. */
const SECRET_SETTINGS = [...readText("lib/config.ts").matchAll(/secret\(\s*env\s*,\s*"([A-Z_]+)"/g)].map(match => match[1]);

describe(".env", () => {
	it("keeps the original's variables, values and host ports 80 and 15672, and publishes the UI and Prometheus on the loopback only", () => {
		expect(dotEnv).toMatchObject({
			RABBIT_HOST: "rabbitmq",
			RABBIT_PORT: "5672",
			RABBIT_QUEUE: "task_queue",
			MONGO_URI: "mongodb://mongo:27017/",
			DB_NAME: "mydb",
			FLASK_PORT: "5001",
			GO_PORT: "5002",
			NGINX_HOST_PORT: "80",
			RABBITMQ_MANAGEMENT_HOST_PORT: "15672",
			RABBITMQ_MANAGEMENT_HOST_IP: "127.0.0.1",
			PROMETHEUS_HOST_IP: "127.0.0.1",
		});
	});

	it("defines every variable lib/config.ts reads (a secret as NAME_FILE), except NODE_ID", () => {
		const names = configEnvNames();
		// Guards the scans themselves: they must find the helpers' arguments.
		expect(names).toEqual(expect.arrayContaining(["RABBIT_HOST", "RABBIT_PASSWORD", "FLASK_PORT", "METRICS_PORT", "TRACING", "NODE_ID"]));
		expect(SECRET_SETTINGS).toEqual(expect.arrayContaining(["RABBIT_PASSWORD", "MONGO_PASSWORD", "MONGO_URI"]));
		const missing = names.filter(name => name !== "NODE_ID" && !(name in dotEnv) && !(SECRET_SETTINGS.includes(name) && `${name}_FILE` in dotEnv));
		expect(missing).toEqual([]);
	});

	it("holds no secret: passwords are files that compose mounts as secrets at /run/secrets/<name>", () => {
		const secrets = Object.keys(loadCompose(dotEnv).secrets ?? {});
		for (const [name, value] of Object.entries(dotEnv)) {
			if (/PASSWORD|COOKIE|SECRET/.test(name) && name !== "SECRETS_DIR") {
				expect({ name, value }).toEqual({ name, value: expect.stringMatching(/^\/run\/secrets\/[a-z_]+$/) });
				expect(secrets).toContain(path.basename(value));
			}
		}
	});

	describe("as a cluster node's configuration, with its secrets where compose mounts them", () => {
		let dir: string;
		const withSecretFiles = (): Record<string, string> => {
			const env: Record<string, string> = { ...dotEnv, NODE_ID: "check" };
			for (const [name, value] of Object.entries(env)) {
				if (!name.endsWith("_FILE")) continue;
				env[name] = path.join(dir, path.basename(value));
				writeFileSync(env[name], `${path.basename(value)}-value\n`);
			}
			return env;
		};

		beforeAll(() => {
			dir = mkdtempSync(path.join(tmpdir(), "env-spec-"));
		});
		afterAll(() => rmSync(dir, { recursive: true, force: true }));

		it("logs in to RabbitMQ and MongoDB as the application users, with JSON logs and metrics on", () => {
			const settings = loadConfig(withSecretFiles());
			expect(settings.rabbitUrl).toBe(`amqp://${dotEnv.RABBIT_USER}:rabbit_password-value@rabbitmq:5672/${encodeURIComponent("/")}`);
			expect(settings.mongoUri).toBe(`mongodb://${dotEnv.MONGO_USER}:mongo_password-value@mongo:27017/?authSource=admin`);
			expect(settings.logFormat).toBe("json");
			expect(settings.metricsPort).not.toBeNull();
		});
	});

	it("explains each group of variables with a comment", () => {
		const lines = readText(".env").split("\n");
		lines.forEach((line, index) => {
			const startsGroup = /^[A-Z]/.test(line) && !/^[A-Z]/.test(lines[index - 1] ?? "");
			if (startsGroup) expect({ line, above: lines[index - 1] }).toEqual({ line, above: expect.stringMatching(/^# /) });
		});
	});
});
