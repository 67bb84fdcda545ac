import { MongoClient } from "mongodb";
import { scrape, sumOf } from "../support/prometheus-text";
import { postTask, titled } from "../support/http";
import { eventually } from "../support/eventually";
import { connectToStack, inParallel, type Stack } from "../support/stack";
import { RunTasks } from "../support/stored-tasks";
import type { TaskDocument } from "../../lib/task";

const POSTED = 200;

interface PrometheusAnswer<T> {
	status: string;
	data: T;
}
type Vector = { result: { metric: Record<string, string>; value: [number, string] }[] };
type Targets = { activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] };

/**
 * What an operator reads: the stack's Prometheus scrapes every node, and its HTTP API
 * answers docs/operating.md's queries; a gateway's own metrics count what it refused.
 */
describe("metrics and Prometheus", () => {
	let stack: Stack;
	const posted = new RunTasks("metrics");

	beforeAll(async () => {
		stack = await connectToStack();
	});

	afterAll(async () => {
		// The posted tasks would otherwise grow the developer's store on every run.
		const mongo = new MongoClient(stack.mongoUri, { serverSelectionTimeoutMS: 5000 });
		await posted.remove(mongo.db(stack.dbName).collection<TaskDocument>("tasks"));
		await mongo.close();
	});

	async function api<T>(path: string): Promise<T> {
		const res = await fetch(`http://127.0.0.1:${stack.env.PROMETHEUS_PORT}/api/v1/${path}`, { signal: AbortSignal.timeout(5000) });
		const answer = (await res.json()) as PrometheusAnswer<T>;
		if (answer.status !== "success") throw new Error(`Prometheus ${path}: ${JSON.stringify(answer)}`);
		return answer.data;
	}

	/** The value of a query that yields one number, or undefined while it yields none (or NaN). */
	async function scalar(promql: string): Promise<number | undefined> {
		const { result } = await api<Vector>(`query?query=${encodeURIComponent(promql)}`);
		const value = result.length === 1 ? Number(result[0].value[1]) : NaN;
		return Number.isFinite(value) ? value : undefined;
	}

	it("scrapes every node of the stack, each on its own metrics port", async () => {
		const targets = await eventually(
			"every node's target up",
			async () => {
				const { activeTargets } = await api<Targets>("targets");
				const up = new Set(activeTargets.filter(target => target.health === "up").map(target => target.labels.node));
				return stack.nodes.every(node => up.has(node)) ? activeTargets : undefined;
			},
			30_000,
		);
		const ports = targets.map(target => target.labels.instance);
		expect(new Set(ports).size).toBe(ports.length);
	});

	/** Posts `count` tasks, half to each gateway, and waits until Prometheus has scraped them stored. */
	async function postAndSeeStored(from: number, count: number): Promise<number> {
		const before = (await scalar("sum(tasks_stored_total)")) ?? 0;
		const statuses = await inParallel(
			Array.from({ length: count }, (_, n) => from + n),
			20,
			async n => {
				const res = await postTask(stack.gatewayUrl(n % 2 ? "go" : "flask"), titled(posted.title(n)));
				return res.status;
			},
		);
		expect(statuses.filter(status => status === 202)).toHaveLength(count);
		return eventually(
			`sum(tasks_stored_total) >= ${before + count}`,
			async () => {
				const value = await scalar("sum(tasks_stored_total)");
				return value !== undefined && value >= before + count ? value : undefined;
			},
			30_000,
		);
	}

	it(`counts ${POSTED} posted tasks as stored, and gives their end-to-end latency`, async () => {
		// Two waves: the end-to-end histogram's series appear with their first observation, and
		// rate() needs them scraped once before the tasks it is to see.
		await postAndSeeStored(0, POSTED / 4);
		const stored = await postAndSeeStored(POSTED / 4, (POSTED * 3) / 4);
		expect(stored).toBeGreaterThanOrEqual(POSTED);

		const p99 = await eventually(
			"the p99 of tasks_end_to_end_seconds",
			() => scalar("histogram_quantile(0.99, sum by (le) (rate(tasks_end_to_end_seconds_bucket[1m])))"),
			30_000,
		);
		expect(p99).toBeGreaterThan(0);
		// The stack is idle but for this test: every task is stored within seconds of its post.
		expect(p99).toBeLessThan(30);
		expect(await scalar("sum(tasks_accepted_total)")).toBeGreaterThanOrEqual(POSTED);
	}, 120_000);

	it.each([
		["a text/plain body", 415, { "Content-Type": "text/plain" }, JSON.stringify({ title: "plain" })],
		["a task without a title", 422, { "Content-Type": "application/json" }, "{}"],
	])('counts %s in the gateway\'s tasks_refused_total{status="%i"}', async (_case, status, headers, body) => {
		const address = stack.env.STACK_METRICS.split(",")
			.find(pair => pair.startsWith("api-go-"))
			?.split("=")[1];
		const metricsUrl = `http://${address}/metrics`;
		const labels = { source: "go", status: String(status) };
		const before = sumOf(await scrape(metricsUrl), "tasks_refused_total", labels);
		const res = await fetch(`${stack.baseUrl}/go/tasks`, { method: "POST", headers, body });
		expect(res.status).toBe(status);
		expect(sumOf(await scrape(metricsUrl), "tasks_refused_total", labels)).toBe(before + 1);
	});
});
