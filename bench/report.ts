// `npm run bench:report`: renders the generated part of docs/performance.md from a bench's JSON
// (bench/results/latest.json, or the file named as the first argument) without running anything.
// `npm run bench` calls the same renderer when it has written its figures, so that no figure in
// the page is ever copied by hand.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Machine } from "./machine";

const ROOT = path.resolve(__dirname, "..");
export const RESULTS_FILE = path.join(ROOT, "bench/results/latest.json");
export const REPORT_PAGE = path.join(ROOT, "docs/performance.md");
export const BEGIN_MARKER = "<!-- bench:report:begin (written by `npm run bench` and `npm run bench:report`; do not edit by hand) -->";
export const END_MARKER = "<!-- bench:report:end -->";

/** The cost phase's goals, as ratios of the cluster's figure to the Go peer's. */
export const COST_GOALS: { figure: string; label: string; at: "most" | "least"; ratio: number }[] = [
	{ figure: "gateways", label: "gateways' CPU per task", at: "most", ratio: 1.5 },
	{ figure: "workers", label: "workers' CPU per task", at: "most", ratio: 1.0 },
	{ figure: "total", label: "total CPU per task", at: "most", ratio: 1.0 },
	{ figure: "tasksPerSecond", label: "tasks/s", at: "least", ratio: 1.0 },
];

/** The goal as text, e.g. "≤ 1.5". */
export const goalText = (goal: (typeof COST_GOALS)[number]) => `${goal.at === "most" ? "≤" : "≥"} ${goal.ratio.toFixed(1)}`;

interface LoadFigures {
	requestsPerSecond: number;
	p50Ms: number;
	p99Ms: number;
	non2xx: number;
	errors: number;
}

interface CostRun {
	name: string;
	tasks: number;
	tasksPerSecond: number;
	seconds: number;
	cpu: { perThousandTasks: Record<string, number> };
}

interface CostRound {
	cluster: CostRun;
	peer?: CostRun;
	ratiosToPeer?: Record<string, number>;
}

/** The JSON that bench/run.ts writes; every phase is optional, as BENCH_PHASES picks them. */
export interface BenchResults {
	measuredAt: string;
	machine?: Machine;
	phases?: string[];
	ceilings?: { nginxToBareNode: LoadFigures; amqpPublish: { messagesPerSecond: number }; storeInsert: { documentsPerSecond: number } };
	ingest?: LoadFigures;
	cost?: {
		tasks?: number;
		warmUpTasks?: { first: number; later: number };
		rounds: CostRound[];
		throughNginx: CostRun;
		ratiosToPeer?: Record<string, number>;
		peerSkipped?: string;
	};
	queueTypes?: { runs: CostRun[]; ratiosToClassic: Record<string, Record<string, number>> };
	endToEnd?: { workers: number; tasks: number; tasksPerSecond: number; non2xx: number }[];
	backlog?: { ingest: LoadFigures; waiting: number; gatewayRssMb: { before: number; after: number }; drainTasksPerSecond: number };
	// bench/reads.ts's figures, read loosely: that phase's shape is its own.
	reads?: {
		latencies?: { stored: number; before?: Record<string, Timing>; after?: Record<string, Timing>; figures?: Record<string, ReadFigures> }[];
		flood?: {
			stored?: number;
			postP99Ratio?: number;
			getP99Ratio?: number;
			flooded?: { storeIdle?: { seconds?: number } };
			figures?: Record<string, Figure>;
		};
		ingest?: { stored?: number; figures?: Record<string, Record<string, Figure>> };
	};
	peakRssMb?: Record<string, number>;
}

interface Timing {
	medianMs: number | null;
	errors?: string[];
}

/** A figure measured once, or over rounds as its median and spread. */
type Figure = number | { median: number; min: number; max: number };

interface ReadFigures {
	p50Ms?: Figure;
	p99Ms?: Figure;
	fiveHundreds?: number;
}

const COMPONENTS = ["gateways", "workers", "store", "rabbitmq", "total"] as const;
const COMPONENT_NAMES: Record<string, string> = {
	gateways: "gateways",
	workers: "workers",
	store: "store",
	rabbitmq: "RabbitMQ",
	nginx: "Nginx",
	total: "total",
};

const thousands = (value: number) => value.toLocaleString("en-US");
/** A ratio over a reference figure of 0 is written as null (JSON has no Infinity): not measured. */
const measured = (value: number | null | undefined): value is number => typeof value === "number" && Number.isFinite(value);
const twoDecimals = (value: number | null | undefined) => (measured(value) ? value.toFixed(2) : "n/a");

function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	const middle = Math.floor(sorted.length / 2);
	return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** "median (min–max)", or the one value when there is one. */
function spread(all: (number | null)[], format: (value: number) => string): string {
	const values = all.filter(measured);
	if (values.length === 0) return "n/a";
	if (values.length === 1) return format(values[0]);
	return `${format(median(values))} (${format(Math.min(...values))}–${format(Math.max(...values))})`;
}

function table(header: string[], rows: string[][]): string {
	return [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`, ...rows.map(row => `| ${row.join(" | ")} |`)].join("\n");
}

/** "1, 3 and 4" */
function listOf(items: (string | number)[]): string {
	if (items.length <= 1) return items.join("");
	return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

function machineSection(results: BenchResults): string {
	const when = `${results.measuredAt.slice(0, 16).replace("T", " ")} UTC`;
	const machine = results.machine;
	const phases = results.phases ? `; phases: ${results.phases.join(", ")}` : "";
	if (!machine) return `Measured ${when}${phases}. The JSON does not say which machine it ran on.`;
	const commit = machine.commit ? ` on commit \`${machine.commit}\`` : "";
	return [
		`Measured ${when}${commit}${phases}.`,
		"",
		table(
			["machine", ""],
			[
				["CPU", `${machine.cpu}, ${machine.cores} cores`],
				["memory", `${machine.memoryGb} GB`],
				["load average (1 min) at the start", machine.loadAverage === undefined ? "not recorded" : String(machine.loadAverage)],
				["system", `${machine.os}, kernel ${machine.kernel}`],
				["Node (the bench and the nodes)", machine.node],
				["Go (the peer)", machine.go ?? "not installed"],
				["RabbitMQ", machine.rabbitmq ?? "unknown"],
				["store", machine.store ?? "unknown"],
			],
		),
	].join("\n");
}

function cpuCells(run: CostRun | undefined): string[] {
	if (!run) return [...COMPONENTS.map(() => ""), ""];
	return [...COMPONENTS.map(name => String(run.cpu.perThousandTasks[name] ?? "")), thousands(run.tasksPerSecond)];
}

function costSection(cost: NonNullable<BenchResults["cost"]>): string {
	const out: string[] = ["### CPU per task beside the Go peer (`cost`)", ""];
	const shape = cost.tasks
		? `${thousands(cost.tasks)} tasks a round, straight to both gateways` +
			(cost.warmUpTasks
				? ` after a warm-up of ${thousands(cost.warmUpTasks.first)} tasks in the first round and ${thousands(cost.warmUpTasks.later)} in the others`
				: "")
		: "Straight to both gateways";
	out.push(`${shape}; CPU-ms per 1,000 tasks of each component, and tasks/s.`, "");
	if (cost.peerSkipped) out.push(`The Go peer did not run: ${cost.peerSkipped}.`, "");
	const header = ["round", ...COMPONENTS.map(name => COMPONENT_NAMES[name]), "tasks/s"];
	const peerHeader = ["peer: api", "workers", "store", "RabbitMQ", "total", "tasks/s"];
	const rounds = cost.rounds.map((round, index) => [String(index + 1), ...cpuCells(round.cluster), ...cpuCells(round.peer)]);
	const withPeer = cost.rounds.filter(round => round.peer);
	if (cost.rounds.length > 1) {
		const column = (pick: (round: CostRound) => number | undefined) =>
			spread(
				cost.rounds.map(pick).filter((value): value is number => value !== undefined),
				value => thousands(Math.round(value)),
			);
		rounds.push([
			"median (min–max)",
			...COMPONENTS.map(name => column(round => round.cluster.cpu.perThousandTasks[name])),
			column(round => round.cluster.tasksPerSecond),
			...(withPeer.length
				? [...COMPONENTS.map(name => column(round => round.peer?.cpu.perThousandTasks[name])), column(round => round.peer?.tasksPerSecond)]
				: []),
		]);
	}
	out.push(
		table(
			[...header, ...(withPeer.length ? peerHeader : [])],
			rounds.map(row => (withPeer.length ? row : row.slice(0, header.length))),
		),
		"",
	);

	const ratioRounds = cost.rounds.map((round, index) => ({ round: index + 1, ratios: round.ratiosToPeer })).filter(entry => entry.ratios);
	if (ratioRounds.length) {
		const figures = [...COMPONENTS, "tasksPerSecond"];
		out.push("The cluster's figure over the peer's, each taken within its round:", "");
		const rows = ratioRounds.map(({ round, ratios }) => [String(round), ...figures.map(name => twoDecimals((ratios as Record<string, number>)[name]))]);
		rows.push([
			"median (min–max)",
			...figures.map(name =>
				spread(
					ratioRounds.map(entry => (entry.ratios as Record<string, number>)[name]),
					twoDecimals,
				),
			),
		]);
		out.push(table(["round", ...COMPONENTS.map(name => COMPONENT_NAMES[name]), "tasks/s"], rows), "");
		out.push(goalsSection(ratioRounds as { round: number; ratios: Record<string, number> }[]), "");
	}
	const nginx = cost.throughNginx;
	const nginxCpu = Object.entries(nginx.cpu.perThousandTasks)
		.map(([name, value]) => `${COMPONENT_NAMES[name] ?? name} ${value}`)
		.join(", ");
	out.push(`Through Nginx, one run of ${thousands(nginx.tasks)} tasks: ${nginxCpu} CPU-ms per 1,000 tasks, ${thousands(nginx.tasksPerSecond)} tasks/s.`);
	return out.join("\n");
}

function meets(goal: (typeof COST_GOALS)[number], ratio: number | null): boolean {
	if (!measured(ratio)) return false;
	return goal.at === "most" ? ratio <= goal.ratio : ratio >= goal.ratio;
}

/** Each goal: whether the median meets it, the rounds that did, and the spread over all rounds. */
function goalsSection(rounds: { round: number; ratios: Record<string, number> }[]): string {
	const rows = COST_GOALS.map(goal => {
		const values = rounds.map(entry => entry.ratios[goal.figure]).filter(measured);
		const met = rounds.filter(entry => meets(goal, entry.ratios[goal.figure])).map(entry => entry.round);
		const label = `${goal.label} ${goalText(goal)}× the peer's`;
		if (values.length === 0) return [label, "n/a", "n/a", `none of ${rounds.length}`, "not measured: the peer's figure was 0"];
		const verdict = meets(goal, median(values)) ? "met by the median" : "not met by the median";
		return [
			label,
			twoDecimals(median(values)),
			`${twoDecimals(Math.min(...values))}–${twoDecimals(Math.max(...values))}`,
			met.length ? `${listOf(met)} (${met.length} of ${rounds.length})` : `none of ${rounds.length}`,
			verdict,
		];
	});
	const together = rounds.filter(entry => COST_GOALS.every(goal => meets(goal, entry.ratios[goal.figure]))).map(entry => entry.round);
	return [
		table(["goal", "median", "spread (min–max)", "rounds that met it", "verdict"], rows),
		"",
		together.length
			? `All four goals held together in round${together.length > 1 ? "s" : ""} ${listOf(together)} of ${rounds.length}.`
			: `All four goals held together in none of the ${rounds.length} rounds.`,
	].join("\n");
}

function ceilingsAndIngest(results: BenchResults): string | null {
	const { ceilings, ingest } = results;
	if (!ceilings && !ingest) return null;
	const rows: string[][] = [];
	const bare = ceilings?.nginxToBareNode;
	if (bare)
		rows.push(["ceiling: Nginx in front of a bare Node server", `${thousands(bare.requestsPerSecond)} req/s, p50 ${bare.p50Ms} ms, p99 ${bare.p99Ms} ms`]);
	if (ceilings) {
		rows.push(["ceiling: amqplib publishing, persistent and confirmed", `${thousands(ceilings.amqpPublish.messagesPerSecond)} messages/s`]);
		rows.push(["ceiling: unordered inserts of 200 documents", `${thousands(ceilings.storeInsert.documentsPerSecond)} documents/s`]);
	}
	if (ingest) {
		const againstCeiling = bare ? `; p99 ${twoDecimals(ingest.p99Ms / bare.p99Ms)}× the ceiling's (goal ≤ 2×)` : "";
		rows.push([
			"ingest: `POST /flask/tasks` through Nginx while the workers consume",
			`${thousands(ingest.requestsPerSecond)} req/s, p50 ${ingest.p50Ms} ms, p99 ${ingest.p99Ms} ms${againstCeiling}; ${ingest.non2xx} non-2xx, ${ingest.errors} errors`,
		]);
	}
	return ["### Ceilings and ingest", "", table(["figure", "measured"], rows)].join("\n");
}

function throughput(results: BenchResults): string | null {
	const { endToEnd, backlog } = results;
	if (!endToEnd && !backlog) return null;
	const rows: string[][] = (endToEnd ?? []).map(run => [
		`end to end, ${run.workers} worker process${run.workers === 1 ? "" : "es"}`,
		`${thousands(run.tasksPerSecond)} tasks/s (${thousands(run.tasks)} tasks, ${run.non2xx} non-2xx)`,
	]);
	if (backlog) {
		rows.push(
			["backlog: ingest with the workers stopped", `${thousands(backlog.ingest.requestsPerSecond)} req/s, p99 ${backlog.ingest.p99Ms} ms`],
			[`backlog: drain of ${thousands(backlog.waiting)} waiting tasks`, `${thousands(backlog.drainTasksPerSecond)} tasks/s`],
			["api-flask RSS before / after the backlog", `${backlog.gatewayRssMb.before} / ${backlog.gatewayRssMb.after} MB`],
		);
	}
	return ["### End to end and backlog", "", table(["figure", "measured"], rows)].join("\n");
}

function queueTypesSection(queueTypes: NonNullable<BenchResults["queueTypes"]>): string {
	const rows = queueTypes.runs.map(run => {
		const ratios = queueTypes.ratiosToClassic[run.name];
		return [
			run.name,
			...cpuCells(run),
			ratios ? `${twoDecimals(ratios.rabbitmq)} / ${twoDecimals(ratios.total)} / ${twoDecimals(ratios.tasksPerSecond)}` : "1 / 1 / 1",
		];
	});
	return [
		"### Queue types (`queue-types`)",
		"",
		"CPU-ms per 1,000 tasks straight to the gateways, each setup on a stack started anew; on the cluster RabbitMQ's figure sums its three nodes.",
		"",
		table(["setup", ...COMPONENTS.map(name => COMPONENT_NAMES[name]), "tasks/s", "over classic: RabbitMQ / total / tasks/s"], rows),
	].join("\n");
}

function figureText(figure: Figure | undefined): string {
	if (figure === undefined) return "";
	if (typeof figure === "number") return String(figure);
	return figure.min === figure.max ? String(figure.median) : `${figure.median} (${figure.min}–${figure.max})`;
}

/** The reads phase (bench/reads.ts), in either of the shapes that phase has written. */
function readsSection(reads: NonNullable<BenchResults["reads"]>): string {
	const ms = (timing: Timing | undefined) =>
		!timing ? "" : timing.medianMs === null ? `timed out (${timing.errors?.[0] ?? "no answer"})` : `${timing.medianMs} ms`;
	const out = ["### Reads (`reads`)", ""];
	const latencies = reads.latencies ?? [];
	if (latencies.some(size => size.figures)) {
		const rows = latencies.flatMap(size =>
			Object.entries(size.figures ?? {}).map(([kind, figures]) => [
				thousands(size.stored),
				kind,
				figureText(figures.p50Ms),
				figureText(figures.p99Ms),
				String(figures.fiveHundreds ?? ""),
			]),
		);
		out.push("Median (min–max) over the phase's rounds.", "", table(["stored tasks", "read", "p50 ms", "p99 ms", "5xx"], rows), "");
	} else if (latencies.length) {
		const rows = latencies.map(size => [
			thousands(size.stored),
			`${ms(size.before?.list)} / ${ms(size.before?.get)}`,
			`${ms(size.after?.listFirstPage)} / ${ms(size.after?.listAfterCursor)} / ${ms(size.after?.getStored)}`,
		]);
		out.push(table(["stored tasks", "moleculer-db's shapes: list / get", "now: list page 1 / after a cursor / get"], rows), "");
	}
	const flood = reads.flood;
	if (flood?.figures) {
		out.push(
			"Beside a flood of lists:",
			"",
			table(
				["figure", "measured"],
				Object.entries(flood.figures).map(([name, figure]) => [name, figureText(figure)]),
			),
			"",
		);
	} else if (flood) {
		out.push(
			`Beside 32 clients flooding the list at ${thousands(flood.stored ?? 0)} stored tasks: p99 of \`POST /tasks\` ${flood.postP99Ratio}× and of ` +
				`\`GET /tasks/:id\` ${flood.getP99Ratio}× their p99 alone (goal ≤ 2×); the store idle ${flood.flooded?.storeIdle?.seconds} s after the clients left (goal ≤ 15 s).`,
			"",
		);
	}
	const ingest = reads.ingest?.figures;
	if (ingest) {
		const rows = Object.entries(ingest).map(([name, ratios]) => [
			name,
			...COMPONENTS.slice(0, 4).map(component => figureText(ratios[component])),
			figureText(ratios.total),
		]);
		out.push(
			`CPU per task of ingest at ${thousands(reads.ingest?.stored ?? 0)} stored tasks over an empty store:`,
			"",
			table(["", ...COMPONENTS.slice(0, 4).map(name => COMPONENT_NAMES[name]), "total"], rows),
		);
	}
	return out.join("\n").trimEnd();
}

function peakRss(peak: Record<string, number>): string | null {
	const entries = Object.entries(peak);
	if (!entries.length) return null;
	return [
		"### Peak RSS (goal ≤ 150 MB a node)",
		"",
		table(
			["node", "MB"],
			entries.map(([node, mb]) => [node, String(mb)]),
		),
	].join("\n");
}

/** The generated part of docs/performance.md, markers included. */
export function renderReport(results: BenchResults): string {
	const sections = [
		"## Latest results",
		machineSection(results),
		ceilingsAndIngest(results),
		results.cost ? costSection(results.cost) : null,
		throughput(results),
		results.queueTypes ? queueTypesSection(results.queueTypes) : null,
		results.reads ? readsSection(results.reads) : null,
		results.peakRssMb ? peakRss(results.peakRssMb) : null,
	].filter((section): section is string => section !== null);
	return `${BEGIN_MARKER}\n${sections.join("\n\n")}\n${END_MARKER}`;
}

/** The page with its generated part replaced (or appended, when the page has no markers yet). */
export function withReport(page: string, report: string): string {
	const begin = page.indexOf(BEGIN_MARKER);
	const end = page.indexOf(END_MARKER);
	if (begin === -1 || end === -1) return `${page.trimEnd()}\n\n${report}\n`;
	return page.slice(0, begin) + report + page.slice(end + END_MARKER.length);
}

/** Renders `resultsFile` into docs/performance.md. */
export function writeReport(resultsFile = RESULTS_FILE, page = REPORT_PAGE): void {
	const results = JSON.parse(readFileSync(resultsFile, "utf8")) as BenchResults;
	writeFileSync(page, withReport(readFileSync(page, "utf8"), renderReport(results)));
}

if (require.main === module) {
	const file = process.argv[2] ? path.resolve(process.argv[2]) : RESULTS_FILE;
	if (!existsSync(file)) {
		console.error(`[bench] no results at ${path.relative(ROOT, file)}: \`npm run bench\` writes them`);
		process.exit(1);
	}
	writeReport(file);
	console.log(`[bench] ${path.relative(ROOT, REPORT_PAGE)} rendered from ${path.relative(ROOT, file)}`);
}
