// `npx tsx bench/edge-limits.ts` on the running local stack: do Nginx's per-client limits keep
// one abusive client from slowing the others down? Victims post tasks at a modest pace, each
// from an address of its own (127.0.0.11, ...), first alone, then beside an abuser (127.0.0.10)
// posting at 10× NGINX_POST_RATE, then beside the same abuser from 127.0.0.1, which
// NGINX_LIMIT_EXEMPT exempts (the limits' absence, for contrast). Phases alternate over rounds, as
// this machine's speed drifts. Goal (issue 26): the victims' p99 beside the limited abuser within
// 2× of their p99 alone. Prints the figures and writes them to bench/results/edge-limits.json.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MongoClient } from "mongodb";
import { ROOT, stackEnv } from "../scripts/stack-control";
import { clientAt, post } from "../test/support/edge-client";

const VICTIMS = Number(process.env.EDGE_VICTIMS ?? 4);
/** POSTs per second of each victim: a well-behaved client, under its own limit. */
const VICTIM_RATE = Number(process.env.EDGE_VICTIM_RATE ?? 10);
const PHASE_SECONDS = Number(process.env.EDGE_PHASE_SECONDS ?? 15);
const ROUNDS = Number(process.env.EDGE_ROUNDS ?? 3);
const OUT = process.env.EDGE_OUT ?? path.join(ROOT, "bench/results/edge-limits.json");

type Phase = "alone" | "limited abuser" | "exempt abuser";

interface Sent {
	status: number;
	ms: number;
}

const env = stackEnv();
const nginx = `http://127.0.0.1:${env.NGINX_PORT}`;
const abuseRate = 10 * Number(env.NGINX_POST_RATE);
const tag = `edge-bench-${Date.now().toString(36)}`;

/** Posts at `perSecond`, on schedule whatever the answers take (an open loop, as real clients are), for `seconds`. */
async function paced(address: string, perSecond: number, seconds: number, label: string): Promise<Sent[]> {
	const agent = clientAt(address);
	const sent: Promise<Sent>[] = [];
	const startedAt = performance.now();
	try {
		for (let i = 0; i < perSecond * seconds; i++) {
			const due = startedAt + (i * 1000) / perSecond;
			const wait = due - performance.now();
			if (wait > 0) await sleep(wait);
			const at = performance.now();
			sent.push(
				post(agent, `${nginx}/${i % 2 ? "go" : "flask"}/tasks`, JSON.stringify({ title: `${tag} ${label} ${i}` })).then(
					answer => ({ status: answer.status, ms: performance.now() - at }),
					() => ({ status: 0, ms: performance.now() - at }),
				),
			);
		}
		return await Promise.all(sent);
	} finally {
		agent.destroy();
	}
}

function percentile(sorted: number[], p: number): number {
	return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function summary(sent: Sent[]) {
	const ms = sent.map(s => s.ms).sort((a, b) => a - b);
	const statuses: Record<string, number> = {};
	for (const s of sent) statuses[s.status] = (statuses[s.status] ?? 0) + 1;
	const round = (value: number) => Math.round(value * 10) / 10;
	return { requests: sent.length, p50Ms: round(percentile(ms, 50)), p99Ms: round(percentile(ms, 99)), maxMs: round(ms.at(-1) ?? NaN), statuses };
}

async function runPhase(phase: Phase, label: string) {
	const abuser = phase === "limited abuser" ? "127.0.0.10" : phase === "exempt abuser" ? "127.0.0.1" : null;
	const victims = Array.from({ length: VICTIMS }, (_, i) => paced(`127.0.0.${11 + i}`, VICTIM_RATE, PHASE_SECONDS, `${label} victim ${i}`));
	const abuse = abuser ? paced(abuser, abuseRate, PHASE_SECONDS, `${label} abuser`) : Promise.resolve([]);
	const [victimAnswers, abuserAnswers] = await Promise.all([Promise.all(victims).then(all => all.flat()), abuse]);
	return { victims: victimAnswers, abuser: abuserAnswers };
}

async function main() {
	const phases: Phase[] = ["alone", "limited abuser", "exempt abuser"];
	const pooled = new Map<Phase, { victims: Sent[]; abuser: Sent[] }>(phases.map(phase => [phase, { victims: [], abuser: [] }]));
	const rounds = [];
	console.log(
		`[edge] ${VICTIMS} victims at ${VICTIM_RATE}/s each; abuser at ${abuseRate}/s (10 × NGINX_POST_RATE ${env.NGINX_POST_RATE}, burst ${env.NGINX_POST_BURST}, in flight ${env.NGINX_POST_CONCURRENCY}); ${ROUNDS} rounds of ${PHASE_SECONDS} s phases`,
	);
	// A warm-up, so that the first phase does not pay for cold connections and JIT.
	await runPhase("alone", "warm-up");
	for (let round = 1; round <= ROUNDS; round++) {
		const figures: Record<string, unknown> = { round };
		for (const phase of phases) {
			const answers = await runPhase(phase, `r${round} ${phase}`);
			pooled.get(phase)?.victims.push(...answers.victims);
			pooled.get(phase)?.abuser.push(...answers.abuser);
			figures[phase] = { victims: summary(answers.victims), abuser: summary(answers.abuser) };
			console.log(
				`[edge] round ${round} ${phase}: victims ${JSON.stringify(summary(answers.victims))}${answers.abuser.length ? `; abuser ${JSON.stringify(summary(answers.abuser).statuses)}` : ""}`,
			);
		}
		rounds.push(figures);
	}
	const total = Object.fromEntries(
		phases.map(phase => [phase, { victims: summary(pooled.get(phase)!.victims), abuser: summary(pooled.get(phase)!.abuser) }]),
	);
	const ratio = (phase: Phase) => Math.round((total[phase].victims.p99Ms / total.alone.victims.p99Ms) * 100) / 100;
	const result = {
		measuredAt: new Date().toISOString(),
		settings: {
			victims: VICTIMS,
			victimRate: VICTIM_RATE,
			abuseRate,
			phaseSeconds: PHASE_SECONDS,
			rounds: ROUNDS,
			nginx: { rate: env.NGINX_POST_RATE, burst: env.NGINX_POST_BURST, inFlight: env.NGINX_POST_CONCURRENCY },
		},
		rounds,
		total,
		victimP99Ratio: { limitedAbuser: ratio("limited abuser"), exemptAbuser: ratio("exempt abuser") },
		goalHolds: ratio("limited abuser") <= 2,
	};
	console.log(
		`[edge] victims' p99 alone ${total.alone.victims.p99Ms} ms; beside the limited abuser ${total["limited abuser"].victims.p99Ms} ms (×${result.victimP99Ratio.limitedAbuser}); beside the exempt abuser ${total["exempt abuser"].victims.p99Ms} ms (×${result.victimP99Ratio.exemptAbuser})`,
	);
	console.log(`[edge] goal (×2 at most beside the limited abuser): ${result.goalHolds ? "holds" : "missed"}`);
	mkdirSync(path.dirname(OUT), { recursive: true });
	writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);
	console.log(`[edge] written to ${path.relative(ROOT, OUT)}`);
}

main()
	.finally(async () => {
		// The tasks the run posted, out of the developer's store.
		const mongo = new MongoClient(env.MONGO_URI, { serverSelectionTimeoutMS: 5000 });
		await sleep(3000);
		await mongo
			.db(env.DB_NAME)
			.collection("tasks")
			.deleteMany({ title: { $regex: `^${tag} ` } })
			.finally(() => mongo.close());
	})
	.catch(err => {
		console.error(err);
		process.exitCode = 1;
	});
