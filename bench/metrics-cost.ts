// `npx tsx bench/metrics-cost.ts`: a gateway's CPU per request with metrics off and on, and how
// much of it is the task metrics (lib/task-metrics.ts) rather than Moleculer's own. Like
// bench/gateway-layers.ts: the real api-flask on the in-process queue answers POST /tasks while a
// child process loads it (64 connections), and this process's CPU is divided by the requests.
// The brokers are the nodes' own (moleculer.config.ts), with metrics turned on or off.
import type { BrokerOptions, ServiceSchema } from "moleculer";
import { TaskMetrics } from "../lib/task-metrics";
import { nodeBroker, nodeMetrics } from "./broker";
import { postTasksFromChild } from "./load";

const PORT = 5192;
const REQUESTS = Number(process.env.BENCH_LAYER_REQUESTS ?? 20_000);
const WARM_UP = 4_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

const load = (amount: number) => postTasksFromChild(`http://127.0.0.1:${PORT}/tasks`, amount);

const recording = { taskAccepted: TaskMetrics.prototype.taskAccepted };

const VARIANTS: Record<string, { options: BrokerOptions; taskMetrics: boolean }> = {
	"metrics off": { options: { metrics: nodeMetrics(false) }, taskMetrics: true },
	"metrics on, Moleculer's only (task metrics stubbed)": { options: { metrics: nodeMetrics(true) }, taskMetrics: false },
	"metrics on, Moleculer's and the task metrics": { options: { metrics: nodeMetrics(true) }, taskMetrics: true },
};

async function main() {
	const [{ default: ApiFlask }, { default: Tasks }] = await Promise.all([import("../services/api-flask.service"), import("../services/tasks.service")]);
	for (let round = 1; round <= ROUNDS; round++) {
		// Each round starts with another variant: the later ones run on a process that has done more.
		const entries = Object.entries(VARIANTS);
		for (const [name, variant] of [...entries.slice(round % entries.length), ...entries.slice(0, round % entries.length)]) {
			TaskMetrics.prototype.taskAccepted = variant.taskMetrics ? recording.taskAccepted : () => undefined;
			const broker = nodeBroker(variant.options);
			broker.createService(Tasks as ServiceSchema);
			broker.createService({ ...ApiFlask, settings: { ...ApiFlask.settings, port: PORT } } as ServiceSchema);
			await broker.start();
			await load(WARM_UP);
			const before = process.cpuUsage();
			const figures = await load(REQUESTS);
			const used = process.cpuUsage(before);
			await broker.stop();
			console.log(
				`round ${round}, ${name}: ${Math.round((used.user + used.system) / figures.requests)} µs per request, ${figures.requestsPerSecond} req/s`,
			);
		}
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
