// `npx tsx bench/gateway-layers.ts`: where a gateway's CPU per request goes, layer by layer. Each
// variant answers POST /tasks in a process of its own while a child process loads it (64
// connections), and that process's own CPU time is divided by the requests. Each broker is built
// from moleculer.config.ts, as a node's is: without RABBIT_HOST and MONGO_URI the real gateway runs
// on the embedded (in-process) queue and store and needs no stack; with them, on the stack's.
import { fork } from "node:child_process";
import http from "node:http";
import type { ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { jsonBodyParser } from "../lib/http/request-guards";
import { nodeBroker } from "./broker";
import { postTasksFromChild } from "./load";

const PORT = 5191;
const REQUESTS = Number(process.env.BENCH_LAYER_REQUESTS ?? 20_000);
// V8 optimises a gateway's per-request code over its first ten thousand requests or so (the
// stack's gateways are measured after 100,000).
const WARM_UP = Number(process.env.BENCH_LAYER_WARM_UP ?? 20_000);

// Requests per second the load keeps to, warm-up included; 0 (the default) as fast as answered.
const RATE = Number(process.env.BENCH_LAYER_RATE ?? 0);

const load = (amount: number) => postTasksFromChild(`http://127.0.0.1:${PORT}/tasks`, amount, RATE);

function trivialGateway(bodyParsed: boolean): ServiceSchema {
	return <ServiceSchema>{
		name: "layers",
		mixins: [ApiGateway as unknown as ServiceSchema],
		settings: {
			port: PORT,
			logRequest: "debug",
			logResponse: "debug",
			routes: [
				{
					path: "/",
					mappingPolicy: "restrict",
					bodyParsers: false,
					use: bodyParsed ? [jsonBodyParser(16_384)] : [],
					aliases: { "POST /tasks": "layers.accept" },
				},
			],
		},
		actions: {
			accept(ctx: { meta: { $statusCode?: number } }) {
				ctx.meta.$statusCode = 202;
				return { status: "queued" };
			},
		},
	};
}

const VARIANTS: Record<string, () => Promise<() => Promise<void>>> = {
	"bare Node HTTP server": async () => {
		const server = http.createServer((req, res) => {
			req.resume();
			req.on("end", () => res.writeHead(202, { "content-type": "application/json" }).end('{"status":"queued"}'));
		});
		await new Promise<void>(resolve => server.listen(PORT, "127.0.0.1", resolve));
		return () => new Promise(resolve => server.close(() => resolve()));
	},
	"moleculer-web, alias to a trivial action, no body parser": async () => started(trivialGateway(false)),
	"moleculer-web, alias to a trivial action, the gateway's body parser": async () => started(trivialGateway(true)),
	"the real gateway (api-flask) on the in-process queue": async () => {
		const [{ default: ApiFlask }, { default: Tasks }] = await Promise.all([import("../services/api-flask.service"), import("../services/tasks.service")]);
		return started(Tasks as ServiceSchema, { ...ApiFlask, settings: { ...ApiFlask.settings, port: PORT } } as ServiceSchema);
	},
};

async function started(...schemas: ServiceSchema[]): Promise<() => Promise<void>> {
	const broker = nodeBroker();
	for (const schema of schemas) broker.createService(schema);
	await broker.start();
	return () => broker.stop();
}

async function measure(name: string) {
	const stop = await VARIANTS[name]();
	await load(WARM_UP);
	const before = process.cpuUsage();
	const figures = await load(REQUESTS);
	const used = process.cpuUsage(before);
	await stop();
	const perRequest = (micros: number) => Math.round(micros / figures.requests);
	const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
	console.log(
		`${name}: ${perRequest(used.user + used.system)} µs per request (user ${perRequest(used.user)}, system ${perRequest(used.system)}), ${figures.requestsPerSecond} req/s, peak RSS ${peakRssMb} MB`,
	);
}

/** Each variant in a process of its own, as a gateway runs: none inherits another's heap or compiled code. */
async function main() {
	const variant = process.argv[2];
	if (variant) return measure(variant);
	for (const name of Object.keys(VARIANTS)) {
		const child = fork(__filename, [name]);
		const code = await new Promise<number | null>(resolve => child.once("exit", resolve));
		if (code !== 0) throw new Error(`${name}: exited with ${code}`);
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
