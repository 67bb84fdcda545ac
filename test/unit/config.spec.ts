import { loadConfig } from "../../lib/config";

describe("configuration", () => {
	it("runs embedded, with the original's defaults, when nothing is set", () => {
		const settings = loadConfig({});
		expect(settings).toMatchObject({
			rabbitUrl: null,
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

	it("refuses a number that is not one", () => {
		expect(() => loadConfig({ FLASK_PORT: "fivethousand" })).toThrow(/FLASK_PORT must be an integer/);
		expect(() => loadConfig({ LOG_FORMAT: "xml" })).toThrow(/LOG_FORMAT must be one of/);
	});

	it("turns metrics on only with a port", () => {
		expect(loadConfig({}).metricsPort).toBeNull();
		expect(loadConfig({ METRICS_PORT: "3030" }).metricsPort).toBe(3030);
	});
});
