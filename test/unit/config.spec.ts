import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "../../lib/config";

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

	it("reads the credentials from the files that *_FILE names (Docker secrets), over the plain settings", () => {
		const dir = mkdtempSync(path.join(tmpdir(), "config-secrets-"));
		writeFileSync(path.join(dir, "password"), "s3cret/pw\n");
		writeFileSync(path.join(dir, "uri"), "mongodb://app:pw@mongo:27017/?authSource=admin");
		const settings = loadConfig({
			RABBIT_HOST: "rabbitmq",
			RABBIT_USER: "app",
			RABBIT_PASSWORD: "ignored",
			RABBIT_PASSWORD_FILE: path.join(dir, "password"),
			MONGO_URI_FILE: path.join(dir, "uri"),
		});
		expect(settings.rabbitUrl).toBe("amqp://app:s3cret%2Fpw@rabbitmq:5672/%2F");
		expect(settings.mongoUri).toBe("mongodb://app:pw@mongo:27017/?authSource=admin");
		expect(() => loadConfig({ RABBIT_PASSWORD_FILE: path.join(dir, "missing") })).toThrow(/RABBIT_PASSWORD_FILE names a file that cannot be read/);
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
