import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "../../scripts/stack-control";

export const FAULT_REPORT = path.join(ROOT, ".stack/fault-report.txt");

/** An aligned text table: the first column left-aligned, the others (numbers) right-aligned. */
export function textTable(header: string[], rows: string[][]): string {
	const widths = header.map((title, column) => Math.max(title.length, ...rows.map(row => row[column].length)));
	const line = (cells: string[]) => cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join("  ");
	return [line(header), widths.map(width => "-".repeat(width)).join("  "), ...rows.map(line)].join("\n");
}

/** A duration for a report's cell: "1.3 s", or "never" for one that did not end. */
export const seconds = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : "never");

/** Prints the report on stdout (past Jest's console capture) and keeps it in `file` (.stack/fault-report.txt). */
export function publishReport(report: string, file = FAULT_REPORT): void {
	mkdirSync(path.dirname(file), { recursive: true });
	writeFileSync(file, `${report}\n`);
	process.stdout.write(`\n${report}\n(also in ${path.relative(ROOT, file)})\n\n`);
}
