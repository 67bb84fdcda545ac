import { loadConfig } from "../../../lib/config";
import { configEnvNames, loadDotEnv, readText } from "../../support/deployment-files";

/** .env: the settings compose hands every container, and their agreement with lib/config.ts. */

const dotEnv = loadDotEnv();

describe(".env", () => {
	it("keeps the original's variables and values", () => {
		expect(dotEnv).toMatchObject({
			RABBIT_HOST: "rabbitmq",
			RABBIT_PORT: "5672",
			RABBIT_QUEUE: "task_queue",
			MONGO_URI: "mongodb://mongo:27017/",
			DB_NAME: "mydb",
			FLASK_PORT: "5001",
			GO_PORT: "5002",
		});
	});

	it("defines every variable lib/config.ts reads, except NODE_ID", () => {
		const names = configEnvNames();
		// Guards the scan itself: it must find the helpers' arguments.
		expect(names).toEqual(expect.arrayContaining(["RABBIT_HOST", "RABBIT_PASSWORD", "FLASK_PORT", "METRICS_PORT", "TRACING", "NODE_ID"]));
		const missing = names.filter(name => name !== "NODE_ID" && !(name in dotEnv));
		expect(missing).toEqual([]);
	});

	it("is a valid configuration for a cluster node, with JSON logs and metrics on", () => {
		const settings = loadConfig({ ...dotEnv, NODE_ID: "check" });
		expect(settings.rabbitUrl).toBe(`amqp://guest:guest@rabbitmq:5672/${encodeURIComponent("/")}`);
		expect(settings.mongoUri).toBe("mongodb://mongo:27017/");
		expect(settings.logFormat).toBe("json");
		expect(settings.metricsPort).not.toBeNull();
	});

	it("explains each group of variables with a comment", () => {
		const lines = readText(".env").split("\n");
		lines.forEach((line, index) => {
			const startsGroup = /^[A-Z]/.test(line) && !/^[A-Z]/.test(lines[index - 1] ?? "");
			if (startsGroup) expect({ line, above: lines[index - 1] }).toEqual({ line, above: expect.stringMatching(/^# /) });
		});
	});
});
