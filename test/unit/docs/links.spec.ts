import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

/**
 * The README and every page under docs/ link to each other and to the code: each relative link
 * must name a file or folder of this repository, and each #anchor a heading of the page it points
 * to, as GitHub renders it. The README stays a five-minute read.
 */

const ROOT = path.resolve(__dirname, "../../..");
const README_MAX_LINES = 250;

function markdownFiles(dir: string): string[] {
	return readdirSync(dir, { withFileTypes: true }).flatMap(entry => {
		const full = path.join(dir, entry.name);
		if (entry.isDirectory()) return markdownFiles(full);
		return entry.name.endsWith(".md") ? [full] : [];
	});
}

const PAGES = [path.join(ROOT, "README.md"), ...markdownFiles(path.join(ROOT, "docs"))];

/** The page's text outside fenced code blocks, where a link or heading is not one. */
function proseLines(text: string): string[] {
	let fenced = false;
	return text.split("\n").filter(line => {
		if (/^\s*(```|~~~)/.test(line)) {
			fenced = !fenced;
			return false;
		}
		return !fenced;
	});
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
export function headingAnchors(text: string): Set<string> {
	const anchors = new Set<string>();
	const seen = new Map<string, number>();
	for (const line of proseLines(text)) {
		const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
		if (heading === undefined) continue;
		const plain = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, "$1").replace(/[`*]/g, "");
		const slug = plain
			.toLowerCase()
			.replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "")
			.replace(/ /g, "-");
		const count = seen.get(slug) ?? 0;
		seen.set(slug, count + 1);
		anchors.add(count === 0 ? slug : `${slug}-${count}`);
	}
	return anchors;
}

/** Every inline link's target in the page's prose, code spans aside. */
export function linkTargets(text: string): string[] {
	const prose = proseLines(text)
		.join("\n")
		.replace(/`[^`\n]*`/g, "code");
	return [...prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map(match => match[1]);
}

const isExternal = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target);

/** What is wrong with one relative link of `page`, or null. */
function brokenLink(page: string, target: string): string | null {
	const [file, anchor] = target.split("#", 2);
	const resolved = file ? path.resolve(path.dirname(page), decodeURIComponent(file)) : page;
	if (path.relative(ROOT, resolved).startsWith("..")) return "leaves the repository";
	if (!existsSync(resolved)) return "no such file";
	if (anchor === undefined) return null;
	if (statSync(resolved).isDirectory() || !resolved.endsWith(".md")) return "an anchor into a file that is not a page";
	return headingAnchors(readFileSync(resolved, "utf8")).has(anchor) ? null : "no such heading";
}

describe("the documentation", () => {
	it(`keeps the README within ${README_MAX_LINES} lines`, () => {
		const lines = readFileSync(path.join(ROOT, "README.md"), "utf8").trimEnd().split("\n").length;
		expect(lines).toBeLessThanOrEqual(README_MAX_LINES);
	});

	it("links, from the README and every page under docs/, only to files and headings that exist", () => {
		const broken = PAGES.flatMap(page =>
			linkTargets(readFileSync(page, "utf8"))
				.filter(target => !isExternal(target))
				.map(target => ({ target, problem: brokenLink(page, target) }))
				.filter(link => link.problem)
				.map(link => `${path.relative(ROOT, page)}: ${link.target} (${link.problem})`),
		);
		expect(broken).toEqual([]);
	});

	it("reaches every page under docs/ from the README, directly or through another page", () => {
		const reached = new Set<string>();
		const visit = (page: string) => {
			if (reached.has(page)) return;
			reached.add(page);
			for (const target of linkTargets(readFileSync(page, "utf8"))) {
				const file = target.split("#")[0];
				if (isExternal(target) || !file.endsWith(".md")) continue;
				const resolved = path.resolve(path.dirname(page), decodeURIComponent(file));
				if (existsSync(resolved)) visit(resolved);
			}
		};
		visit(path.join(ROOT, "README.md"));
		const decisions = path.join(ROOT, "docs/decisions");
		const unreached = PAGES.filter(page => !reached.has(page) && path.dirname(page) !== decisions);
		expect(unreached.map(page => path.relative(ROOT, page))).toEqual([]);
	});
});

describe("the link checker", () => {
	it("names headings as GitHub does", () => {
		const anchors = headingAnchors(
			"# A RabbitMQ cluster\n## npm run test:ha\n### FerretDB's limits (the local stack)\n## Settings\n## Settings\n```\n# not a heading\n```",
		);
		expect([...anchors]).toEqual(["a-rabbitmq-cluster", "npm-run-testha", "ferretdbs-limits-the-local-stack", "settings", "settings-1"]);
	});

	it("finds links in prose, with code in their text, and none in code", () => {
		const text = "See [`lib/config.ts`](lib/config.ts) and [the API](#the-api).\n```\n[not](a-link.md)\n```\n`[nor](this.md)` ![logo](docs/logo.png)";
		expect(linkTargets(text)).toEqual(["lib/config.ts", "#the-api", "docs/logo.png"]);
	});
});
