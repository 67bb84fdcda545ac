import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { QueueUnavailableError } from "../../../lib/errors";
import { DEAD_LETTER_REASONS } from "../../../lib/queue/task-queue";
import { newTask } from "../../../lib/task";
import { taskMetricsOf } from "../../../lib/task-metrics";
import { startEmbeddedCluster, type EmbeddedCluster } from "../../support/embedded-cluster";
import { postTask } from "../../support/http";
import { eventually } from "../../support/eventually";
import { scrape, sumOf, type Sample } from "../../support/prometheus-text";

/**
 * The task metrics as Prometheus reads them: a Fake-transporter node with every role, the
 * in-process queue, and Moleculer's Prometheus reporter on a port of the OS's choosing.
 */
describe("task metrics", () => {
	let cluster: EmbeddedCluster;
	let metricsUrl: string;
	const json = JSON.stringify({ title: "counted" });

	beforeAll(async () => {
		cluster = await startEmbeddedCluster("metrics-node", "Fake", {
			broker: { metrics: { enabled: true, reporter: { type: "Prometheus", options: { port: 0 } } } },
		});
		const reporter = (cluster.broker.metrics as unknown as { reporter: { server: Server }[] }).reporter[0];
		const port = await eventually("the metrics server listening", async () => (reporter.server.address() as AddressInfo | null)?.port);
		metricsUrl = `http://127.0.0.1:${port}/metrics`;
	});
	afterAll(() => cluster.stop());
	afterEach(() => jest.restoreAllMocks());

	/** Waits until `name{labels}` has moved by `by` from `before`, and returns the page. */
	async function movedBy(name: string, labels: Record<string, string>, before: number, by: number): Promise<Sample[]> {
		return eventually(
			`${name} ${JSON.stringify(labels)} moved by ${by}`,
			async () => {
				const samples = await scrape(metricsUrl);
				return sumOf(samples, name, labels) === before + by ? samples : undefined;
			},
			5000,
		);
	}

	it("counts accepted tasks by source, observes their confirms, and labels them with the node", async () => {
		const before = await scrape(metricsUrl);
		const confirmsBefore = sumOf(before, "tasks_publish_confirm_seconds_bucket", { le: "+Inf" });
		for (let n = 0; n < 3; n++) expect((await postTask(cluster.flaskUrl, json)).status).toBe(202);
		for (let n = 0; n < 2; n++) expect((await postTask(cluster.goUrl, json)).status).toBe(202);
		const after = await scrape(metricsUrl);
		expect(sumOf(after, "tasks_accepted_total", { source: "flask" }) - sumOf(before, "tasks_accepted_total", { source: "flask" })).toBe(3);
		expect(sumOf(after, "tasks_accepted_total", { source: "go" }) - sumOf(before, "tasks_accepted_total", { source: "go" })).toBe(2);
		expect(sumOf(after, "tasks_publish_confirm_seconds_bucket", { le: "+Inf" }) - confirmsBefore).toBe(5);
		expect(after.find(sample => sample.name === "tasks_accepted_total")?.labels).toMatchObject({ nodeID: "metrics-node", namespace: "" });
	});

	it("does not count a retry with the same Idempotency-Key as another task", async () => {
		const headers = { "Content-Type": "application/json", "Idempotency-Key": "metrics-once" };
		await postTask(cluster.flaskUrl, json, headers);
		const before = sumOf(await scrape(metricsUrl), "tasks_accepted_total");
		expect((await postTask(cluster.flaskUrl, json, headers)).status).toBe(202);
		expect(sumOf(await scrape(metricsUrl), "tasks_accepted_total")).toBe(before);
	});

	const refusals: [string, number, () => Promise<Response>][] = [
		["a body that is not JSON", 400, () => postTask(cluster.goUrl, "{not json")],
		[
			"a CORS preflight for POST /tasks",
			405,
			() =>
				fetch(`${cluster.goUrl}/tasks`, {
					method: "OPTIONS",
					headers: { "Content-Type": "application/json", "Access-Control-Request-Method": "POST" },
				}),
		],
		["a body over MAX_BODY_BYTES", 413, () => postTask(cluster.goUrl, JSON.stringify({ title: "x".repeat(20_000) }))],
		["a text/plain body", 415, () => postTask(cluster.goUrl, json, { "Content-Type": "text/plain" })],
		["a task without a title", 422, () => postTask(cluster.goUrl, "{}")],
		[
			"a publish RabbitMQ does not confirm",
			503,
			() => {
				jest.spyOn(cluster.queue, "publish").mockRejectedValue(new QueueUnavailableError("RabbitMQ is not connected"));
				return postTask(cluster.goUrl, json);
			},
		],
	];

	it.each(refusals)('counts %s in tasks_refused_total{status="%i"}', async (_case, status, request) => {
		const labels = { source: "go", status: String(status) };
		const before = sumOf(await scrape(metricsUrl), "tasks_refused_total", labels);
		const accepted = sumOf(await scrape(metricsUrl), "tasks_accepted_total");
		expect((await request()).status).toBe(status);
		await movedBy("tasks_refused_total", labels, before, 1);
		expect(sumOf(await scrape(metricsUrl), "tasks_accepted_total")).toBe(accepted);
	});

	it("does not count a failed read as a refused task", async () => {
		const before = sumOf(await scrape(metricsUrl), "tasks_refused_total");
		expect((await fetch(`${cluster.goUrl}/tasks?pageSize=1000`)).status).toBe(422);
		expect(sumOf(await scrape(metricsUrl), "tasks_refused_total")).toBe(before);
	});

	it("counts stored tasks by worker role, their batches and writes, and their end-to-end time", async () => {
		const before = await scrape(metricsUrl);
		const tasks = Array.from({ length: 40 }, (_, n) => newTask(`stored ${n}`, "flask"));
		await Promise.all(tasks.map(task => cluster.queue.publish(task)));
		const after = await movedBy("tasks_stored_total", {}, sumOf(before, "tasks_stored_total"), 40);
		const roles = new Set(after.filter(sample => sample.name === "tasks_stored_total").map(sample => sample.labels.processed_by));
		expect([...roles].sort()).toEqual(["worker-go", "worker-py"]);
		const moved = (name: string, labels: Record<string, string> = {}) => sumOf(after, name, labels) - sumOf(before, name, labels);
		expect(moved("tasks_end_to_end_seconds_bucket", { le: "+Inf" })).toBe(40);
		// Every task here took far less than a minute from its created_at to its processed_at.
		expect(moved("tasks_end_to_end_seconds_bucket", { le: "60" })).toBe(40);
		const batches = moved("tasks_store_batch_size_bucket", { le: "+Inf" });
		expect(batches).toBeGreaterThanOrEqual(2);
		expect(batches).toBeLessThanOrEqual(40);
		expect(moved("tasks_store_write_seconds_bucket", { le: "+Inf" })).toBe(batches);
	});

	it("counts a task whose id belongs to another task as dead-lettered with reason duplicate_id, and the stored one as stored", async () => {
		const labels = { reason: "duplicate_id" };
		const before = await scrape(metricsUrl);
		const first = newTask("the first owner of an id", "go");
		await cluster.queue.publish(first);
		await movedBy("tasks_stored_total", {}, sumOf(before, "tasks_stored_total"), 1);
		await cluster.queue.publish({ ...first, title: "another task with the same id" });
		const after = await movedBy("tasks_dead_lettered_total", labels, sumOf(before, "tasks_dead_lettered_total", labels), 1);
		expect(sumOf(after, "tasks_stored_total")).toBe(sumOf(before, "tasks_stored_total") + 1);
		expect(cluster.queue.deadLettered.map(letter => letter.cause.reason)).toEqual(["duplicate_id"]);
	});

	it("shows every dead-letter reason from the first scrape", async () => {
		const reasons = (await scrape(metricsUrl)).filter(sample => sample.name === "tasks_dead_lettered_total").map(sample => sample.labels.reason);
		expect(new Set(reasons)).toEqual(new Set(DEAD_LETTER_REASONS));
	});

	it("samples the depth of the task queue and its dead-letter queue", async () => {
		const samples = await scrape(metricsUrl);
		const queues = samples.filter(sample => sample.name === "task_queue_messages").map(sample => sample.labels.queue);
		expect(new Set(queues)).toEqual(new Set(["task_queue", "task_queue.dead"]));
	});

	it("registers nothing, and records nothing, when metrics are off", async () => {
		const plain = await startEmbeddedCluster("plain-node");
		try {
			expect(taskMetricsOf(plain.broker)).toBeNull();
			expect(plain.broker.metrics.hasMetric("tasks_accepted_total")).toBe(false);
			expect((await postTask(plain.flaskUrl, json)).status).toBe(202);
			expect((await postTask(plain.flaskUrl, "{}")).status).toBe(422);
		} finally {
			await plain.stop();
		}
	});
});
