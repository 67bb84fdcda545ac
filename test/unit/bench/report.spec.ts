import { existsSync, readFileSync } from "node:fs";
import { BEGIN_MARKER, END_MARKER, renderReport, REPORT_PAGE, RESULTS_FILE, withReport, type BenchResults } from "../../../bench/report";

/** bench/report.ts: docs/performance.md's figures come from the bench's JSON, never by hand. */

const run = (gateways: number, total: number, tasksPerSecond: number) => ({
	name: "run",
	tasks: 30_000,
	tasksPerSecond,
	seconds: 30_000 / tasksPerSecond,
	cpu: { perThousandTasks: { gateways, workers: 30, store: 90, rabbitmq: 70, total } },
});

const ratios = (gateways: number, total: number, tasksPerSecond: number) => ({ gateways, workers: 0.9, store: 1, rabbitmq: 0.8, total, tasksPerSecond });

const RESULTS: BenchResults = {
	measuredAt: "2026-12-04T16:20:00.000Z",
	machine: {
		cpu: "AMD EPYC 7B13",
		cores: 2,
		memoryGb: 23,
		os: "Debian GNU/Linux 12 (bookworm)",
		kernel: "6.18.44",
		node: "v26.10.0",
		go: "go1.26.8",
		rabbitmq: "3.10.8",
		store: "FerretDB 1.24.2",
		commit: "0123456789ab",
		loadAverage: 1.5,
	},
	phases: ["cost"],
	cost: {
		tasks: 30_000,
		warmUpTasks: { first: 100_000, later: 10_000 },
		rounds: [
			{ cluster: run(80, 270, 6100), peer: run(81, 350, 4700), ratiosToPeer: ratios(0.98, 0.77, 1.3) },
			{ cluster: run(88, 297, 5400), peer: run(58, 241, 6500), ratiosToPeer: ratios(1.52, 1.23, 0.83) },
			{ cluster: run(74, 248, 6500), peer: run(63, 263, 6100), ratiosToPeer: ratios(1.17, 0.94, 1.06) },
		],
		throughNginx: { ...run(140, 356, 4751), cpu: { perThousandTasks: { gateways: 140, workers: 30, store: 95, rabbitmq: 70, nginx: 36, total: 356 } } },
	},
	peakRssMb: { "api-flask-1": 142, "worker-go-1": 110 },
};

describe("the performance report", () => {
	const report = renderReport(RESULTS);

	it("describes the machine and the commit the figures come from", () => {
		expect(report).toContain("Measured 2026-12-04 16:20 UTC on commit `0123456789ab`; phases: cost.");
		for (const row of [
			"| CPU | AMD EPYC 7B13, 2 cores |",
			"| memory | 23 GB |",
			"| system | Debian GNU/Linux 12 (bookworm), kernel 6.18.44 |",
			"| Go (the peer) | go1.26.8 |",
			"| store | FerretDB 1.24.2 |",
		]) {
			expect(report).toContain(row);
		}
		expect(report).toContain("v26.10.0");
	});

	it("gives every round beside the peer's, then the median and the spread", () => {
		expect(report).toContain("| 1 | 80 | 30 | 90 | 70 | 270 | 6,100 | 81 | 30 | 90 | 70 | 350 | 4,700 |");
		expect(report).toContain("| 3 | 74 | 30 | 90 | 70 | 248 | 6,500 | 63 | 30 | 90 | 70 | 263 | 6,100 |");
		expect(report).toContain("| median (min–max) | 80 (74–88) |");
		expect(report).toContain("| 2 | 1.52 | 0.90 | 1.00 | 0.80 | 1.23 | 0.83 |");
		expect(report).toContain(
			"| median (min–max) | 1.17 (0.98–1.52) | 0.90 (0.90–0.90) | 1.00 (1.00–1.00) | 0.80 (0.80–0.80) | 0.94 (0.77–1.23) | 1.06 (0.83–1.30) |",
		);
	});

	it("names the rounds and the spread behind every goal it calls met", () => {
		expect(report).toContain("| gateways' CPU per task ≤ 1.5× the peer's | 1.17 | 0.98–1.52 | 1 and 3 (2 of 3) | met by the median |");
		expect(report).toContain("| total CPU per task ≤ 1.0× the peer's | 0.94 | 0.77–1.23 | 1 and 3 (2 of 3) | met by the median |");
		expect(report).toContain("| tasks/s ≥ 1.0× the peer's | 1.06 | 0.83–1.30 | 1 and 3 (2 of 3) | met by the median |");
		expect(report).toContain("All four goals held together in rounds 1 and 3 of 3.");
	});

	it("says when a goal is not met", () => {
		const slow = structuredClone(RESULTS);
		for (const round of slow.cost?.rounds ?? []) round.ratiosToPeer = { ...round.ratiosToPeer, total: 1.2 };
		expect(renderReport(slow)).toContain("| total CPU per task ≤ 1.0× the peer's | 1.20 | 1.20–1.20 | none of 3 | not met by the median |");
		expect(renderReport(slow)).toContain("All four goals held together in none of the 3 rounds.");
	});

	it("gives the reads phase's figures, with their spread over rounds when it has rounds", () => {
		const spread = (median: number, min: number, max: number) => ({ median, min, max });
		const reads = renderReport({
			measuredAt: RESULTS.measuredAt,
			reads: {
				latencies: [{ stored: 1_000_000, figures: { getById: { p50Ms: spread(2, 1, 3), p99Ms: spread(8, 7, 9), fiveHundreds: 0 } } }],
				flood: { figures: { postP99Ratio: spread(1.1, 1, 1.3) } },
				ingest: {
					stored: 1_000_000,
					figures: {
						clusterStoredOverEmpty: {
							gateways: spread(1, 1, 1),
							workers: spread(1.02, 1, 1.1),
							store: spread(1.2, 1.1, 1.3),
							rabbitmq: spread(1, 0.9, 1.1),
							total: spread(1.05, 1, 1.1),
						},
					},
				},
			},
		});
		expect(reads).toContain("| 1,000,000 | getById | 2 (1–3) | 8 (7–9) | 0 |");
		expect(reads).toContain("| postP99Ratio | 1.1 (1–1.3) |");
		expect(reads).toContain("| clusterStoredOverEmpty | 1 | 1.02 (1–1.1) | 1.2 (1.1–1.3) | 1 (0.9–1.1) | 1.05 (1–1.1) |");
		const once = renderReport({
			measuredAt: RESULTS.measuredAt,
			reads: {
				latencies: [
					{
						stored: 10_000,
						before: { list: { medianMs: 468 }, get: { medianMs: 293 } },
						after: { listFirstPage: { medianMs: 336 }, listAfterCursor: { medianMs: null, errors: ["504"] }, getStored: { medianMs: 0.9 } },
					},
				],
			},
		});
		expect(once).toContain("| 10,000 | 468 ms / 293 ms | 336 ms / timed out (504) / 0.9 ms |");
	});

	it("replaces only the part between its markers", () => {
		const page = `# Performance\n\nHow to run it.\n\n${BEGIN_MARKER}\nold figures\n${END_MARKER}\n\nAfter.\n`;
		const rendered = withReport(page, report);
		expect(rendered.startsWith("# Performance\n\nHow to run it.\n\n")).toBe(true);
		expect(rendered.endsWith("\n\nAfter.\n")).toBe(true);
		expect(rendered).not.toContain("old figures");
		expect(withReport(rendered, report)).toBe(rendered);
	});

	it("is, in docs/performance.md, exactly what bench/results/latest.json renders", () => {
		expect(existsSync(RESULTS_FILE)).toBe(true);
		const results = JSON.parse(readFileSync(RESULTS_FILE, "utf8")) as BenchResults;
		const page = readFileSync(REPORT_PAGE, "utf8");
		expect(withReport(page, renderReport(results))).toBe(page);
	});
});
