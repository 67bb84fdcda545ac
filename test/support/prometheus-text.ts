/** One sample of a Prometheus text exposition: `name{label="value",...} number`. */
export interface Sample {
	name: string;
	labels: Record<string, string>;
	value: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g;

/** The samples of a /metrics page; comments (# HELP, # TYPE) are skipped. */
export function parseSamples(text: string): Sample[] {
	const samples: Sample[] = [];
	for (const line of text.split("\n")) {
		const match = SAMPLE_LINE.exec(line);
		if (!match) continue;
		const labels: Record<string, string> = {};
		for (const [, key, value] of (match[2] ?? "").matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, "$1");
		samples.push({ name: match[1], labels, value: Number(match[3]) });
	}
	return samples;
}

/** The sum of the samples named `name` whose labels include `labels`. */
export function sumOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
	return samples
		.filter(sample => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
		.reduce((total, sample) => total + sample.value, 0);
}

/** GETs a node's metrics page and parses it. */
export async function scrape(url: string): Promise<Sample[]> {
	const res = await fetch(url);
	if (!res.ok) throw new Error(`${url} answered ${res.status}`);
	return parseSamples(await res.text());
}
