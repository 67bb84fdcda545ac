// `npx tsx bench/edge-cpu.ts` on the running local stack: Nginx's CPU time per 1,000 POSTs with
// the edge's settings of issue 26 (JSON access log, per-client limit maps and zones) against the
// same configuration without them, swapped by reloading Nginx, rounds interleaved as this
// machine's speed drifts. The POSTs come from 127.0.0.1, as the project's own benches post, and
// carry `{}` (the gateways answer 422 and queue nothing): what differs is Nginx's work alone.
// Prints the figures and writes them to bench/results/edge-cpu.json.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import autocannon from "autocannon";
import { cpuMsOf, pidListeningOn, withChildren } from "./cpu";
import { ROOT, STACK, stackEnv } from "../scripts/stack-control";

const REQUESTS = Number(process.env.EDGE_CPU_REQUESTS ?? 20_000);
const ROUNDS = Number(process.env.EDGE_CPU_ROUNDS ?? 4);
const OUT = process.env.EDGE_CPU_OUT ?? path.join(ROOT, "bench/results/edge-cpu.json");
const SITE = path.join(STACK, "nginx/default.conf");
const NGINX = ["-p", path.join(STACK, "nginx/"), "-c", path.join(STACK, "nginx/nginx.conf")];

const env = stackEnv();
const edge = readFileSync(SITE, "utf8");
/** The same site without the edge's per-request work: no access log, no limits. */
const bare = edge
	.split("\n")
	.filter(line => !/^\s*limit_(req|conn)\b/.test(line))
	.map(line => (/^\s*access_log\s/.test(line) ? "    access_log off;" : line))
	.join("\n");

async function use(site: string): Promise<void> {
	writeFileSync(SITE, site);
	execFileSync("nginx", [...NGINX, "-s", "reload"]);
	// The old workers finish and the new ones start; both are Nginx's children meanwhile.
	await sleep(2000);
}

async function nginxCpuMsPerThousand(): Promise<number> {
	const pids = withChildren(pidListeningOn(Number(env.NGINX_PORT)));
	const before = cpuMsOf(pids);
	await autocannon({
		url: `http://127.0.0.1:${env.NGINX_PORT}/flask/tasks`,
		method: "POST",
		headers: { "content-type": "application/json" },
		body: "{}",
		connections: 16,
		amount: REQUESTS,
		timeout: 10,
	});
	return Math.round(((cpuMsOf(pids) - before) / REQUESTS) * 1000 * 10) / 10;
}

async function main() {
	const figures: { edge: number[]; bare: number[] } = { edge: [], bare: [] };
	try {
		for (let round = 1; round <= ROUNDS; round++) {
			for (const variant of ["edge", "bare"] as const) {
				await use(variant === "edge" ? edge : bare);
				figures[variant].push(await nginxCpuMsPerThousand());
			}
			console.log(
				`[edge-cpu] round ${round}: Nginx CPU-ms per 1,000 POSTs with the edge's settings ${figures.edge.at(-1)}, without ${figures.bare.at(-1)}`,
			);
		}
	} finally {
		await use(edge);
	}
	const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
	const result = {
		measuredAt: new Date().toISOString(),
		requests: REQUESTS,
		rounds: figures,
		median: { edge: median(figures.edge), bare: median(figures.bare) },
	};
	console.log(`[edge-cpu] median Nginx CPU-ms per 1,000 POSTs: ${result.median.edge} with the edge's settings, ${result.median.bare} without`);
	mkdirSync(path.dirname(OUT), { recursive: true });
	writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);
}

main().catch(err => {
	console.error(err);
	process.exitCode = 1;
});
