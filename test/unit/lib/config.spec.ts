import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig, secret } from "../../../lib/config";

describe("configuration", () => {
	it("runs embedded, with the original's defaults, when nothing is set", () => {
		const settings = loadConfig({});
		expect(settings).toMatchObject({
			rabbitUrl: null,
			rabbitUrls: [],
			taskQueueType: "classic",
			mongoUri: null,
			taskQueue: "task_queue",
			dbName: "mydb",
			flaskPort: 5001,
			goPort: 5002,
		});
	});

	it("builds the AMQP URL from the original's variables and the credentials", () => {
		const settings = loadConfig({ RABBIT_HOST: "rabbitmq", RABBIT_PORT: "5673", RABBIT_USER: "app", RABBIT_PASSWORD: "p@ss/word" });
		expect(settings.rabbitUrl).toBe("amqp://app:p%40ss%2Fword@rabbitmq:5673/%2F");
	});

	it("takes every node of RABBIT_HOSTS in order, the port defaulting to RABBIT_PORT", () => {
		const settings = loadConfig({ RABBIT_HOSTS: "rq1:5672, rq2:5673,rq3,[::1]:5674", RABBIT_PORT: "5680", RABBIT_VHOST: "tasks" });
		expect(settings.rabbitUrls).toEqual([
			"amqp://guest:guest@rq1:5672/tasks",
			"amqp://guest:guest@rq2:5673/tasks",
			"amqp://guest:guest@rq3:5680/tasks",
			"amqp://guest:guest@[::1]:5674/tasks",
		]);
		expect(settings.rabbitUrl).toBe(settings.rabbitUrls[0]);
	});

	it("keeps RABBIT_HOST working, and lets RABBIT_HOSTS win over it", () => {
		expect(loadConfig({ RABBIT_HOST: "rabbitmq" }).rabbitUrls).toEqual(["amqp://guest:guest@rabbitmq:5672/%2F"]);
		expect(loadConfig({ RABBIT_HOST: "rabbitmq", RABBIT_HOSTS: "rq1:5672,rq2:5672" }).rabbitUrls).toEqual([
			"amqp://guest:guest@rq1:5672/%2F",
			"amqp://guest:guest@rq2:5672/%2F",
		]);
	});

	it("refuses a RABBIT_HOSTS entry that is not host:port", () => {
		expect(() => loadConfig({ RABBIT_HOSTS: "rq1:5672,,rq2:5672" })).toThrow(/RABBIT_HOSTS must be a comma-separated list of host:port/);
		expect(() => loadConfig({ RABBIT_HOSTS: "rq1:amqp" })).toThrow(/RABBIT_HOSTS has a bad port "amqp"/);
		expect(() => loadConfig({ RABBIT_HOSTS: "rq1:70000" })).toThrow(/RABBIT_HOSTS has a bad port "70000"/);
		expect(() => loadConfig({ RABBIT_HOSTS: "rq1 rq2" })).toThrow(/RABBIT_HOSTS must be/);
	});

	it("declares the task queue classic unless RABBIT_QUEUE_TYPE says quorum", () => {
		expect(loadConfig({ RABBIT_QUEUE_TYPE: "quorum" }).taskQueueType).toBe("quorum");
		expect(() => loadConfig({ RABBIT_QUEUE_TYPE: "stream" })).toThrow(/RABBIT_QUEUE_TYPE must be one of classic, quorum/);
	});

	it("refuses a number that is not one", () => {
		expect(() => loadConfig({ FLASK_PORT: "fivethousand" })).toThrow(/FLASK_PORT must be an integer/);
		expect(() => loadConfig({ LOG_FORMAT: "xml" })).toThrow(/LOG_FORMAT must be one of/);
	});

	it("turns metrics on only with a port", () => {
		expect(loadConfig({}).metricsPort).toBeNull();
		expect(loadConfig({ METRICS_PORT: "3030" }).metricsPort).toBe(3030);
	});
});

/** Secrets from the environment or from files (Docker and Kubernetes secrets), lib/config.ts's secret(). */
describe("configuration: secrets", () => {
	let dir: string;
	const file = (name: string, content: string): string => {
		const target = path.join(dir, name);
		writeFileSync(target, content);
		return target;
	};

	beforeAll(() => {
		dir = mkdtempSync(path.join(tmpdir(), "config-secrets-"));
	});
	afterAll(() => rmSync(dir, { recursive: true, force: true }));

	it("reads NAME, or the file NAME_FILE names without its trailing line break", () => {
		expect(secret({ RABBIT_PASSWORD: "from-env" }, "RABBIT_PASSWORD")).toBe("from-env");
		expect(secret({ RABBIT_PASSWORD_FILE: file("unix", "from file\n") }, "RABBIT_PASSWORD")).toBe("from file");
		expect(secret({ RABBIT_PASSWORD_FILE: file("dos", "crlf\r\n") }, "RABBIT_PASSWORD")).toBe("crlf");
		expect(secret({ RABBIT_PASSWORD_FILE: file("inner", " keeps  spaces \n\n") }, "RABBIT_PASSWORD")).toBe(" keeps  spaces \n");
		expect(secret({}, "RABBIT_PASSWORD")).toBeNull();
	});

	it("refuses both at once, a missing or unreadable file, and an empty one", () => {
		const set = file("set", "x");
		expect(() => secret({ MONGO_PASSWORD: "a", MONGO_PASSWORD_FILE: set }, "MONGO_PASSWORD")).toThrow(
			"Set MONGO_PASSWORD or MONGO_PASSWORD_FILE, not both",
		);
		expect(() => secret({ MONGO_PASSWORD_FILE: path.join(dir, "absent") }, "MONGO_PASSWORD")).toThrow(
			/MONGO_PASSWORD_FILE names .*absent, which cannot be read: ENOENT/,
		);
		expect(() => secret({ MONGO_PASSWORD_FILE: dir }, "MONGO_PASSWORD")).toThrow(/which cannot be read: EISDIR/);
		expect(() => secret({ MONGO_PASSWORD_FILE: file("blank", " \n") }, "MONGO_PASSWORD")).toThrow(/which is empty/);
		if (process.getuid?.() !== 0) {
			const locked = file("locked", "x");
			chmodSync(locked, 0o000);
			expect(() => secret({ MONGO_PASSWORD_FILE: locked }, "MONGO_PASSWORD")).toThrow(/EACCES/);
		}
	});

	it("builds the AMQP URLs from RABBIT_USER_FILE and RABBIT_PASSWORD_FILE", () => {
		const settings = loadConfig({ RABBIT_HOST: "rabbitmq", RABBIT_USER_FILE: file("user", "app\n"), RABBIT_PASSWORD_FILE: file("pw", "p@ss/word\n") });
		expect(settings.rabbitUrls).toEqual(["amqp://app:p%40ss%2Fword@rabbitmq:5672/%2F"]);
	});

	it("puts MONGO_USER and MONGO_PASSWORD(_FILE) into MONGO_URI, authenticating against admin", () => {
		const password = file("mongo", "s3cr:t@/\n");
		expect(loadConfig({ MONGO_URI: "mongodb://mongo:27017/", MONGO_USER: "app", MONGO_PASSWORD_FILE: password }).mongoUri).toBe(
			"mongodb://app:s3cr%3At%40%2F@mongo:27017/?authSource=admin",
		);
		expect(loadConfig({ MONGO_URI: "mongodb://m1,m2:27018", MONGO_USER: "app", MONGO_PASSWORD: "pw" }).mongoUri).toBe(
			"mongodb://app:pw@m1,m2:27018/?authSource=admin",
		);
		expect(loadConfig({ MONGO_URI: "mongodb://mongo/?replicaSet=rs&authSource=users", MONGO_USER: "app", MONGO_PASSWORD: "pw" }).mongoUri).toBe(
			"mongodb://app:pw@mongo/?replicaSet=rs&authSource=users",
		);
		// Without MONGO_USER the URI is used as it is: a whole URI with credentials fits MONGO_URI_FILE.
		expect(loadConfig({ MONGO_URI_FILE: file("uri", "mongodb://u:p@db:27017/\n") }).mongoUri).toBe("mongodb://u:p@db:27017/");
	});

	it("refuses Mongo credentials that cannot be used", () => {
		expect(() => loadConfig({ MONGO_URI: "mongodb://mongo:27017/", MONGO_USER: "app" })).toThrow(/MONGO_USER is set without MONGO_PASSWORD/);
		expect(() => loadConfig({ MONGO_URI: "mongodb://u:p@mongo/", MONGO_USER: "app", MONGO_PASSWORD: "pw" })).toThrow(/already holds credentials/);
		expect(() => loadConfig({ MONGO_URI: "http://mongo/", MONGO_USER: "app", MONGO_PASSWORD: "pw" })).toThrow(/must be a mongodb:\/\//);
	});
});
