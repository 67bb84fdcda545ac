// The parts of autocannon 8's programmatic API that the benchmark uses (it ships no typings).
declare module "autocannon" {
	interface Options {
		url: string;
		method?: "GET" | "POST";
		headers?: Record<string, string>;
		body?: string;
		connections?: number;
		duration?: number;
		amount?: number;
		timeout?: number;
		sampleInt?: number;
	}
	interface Histogram {
		average: number;
		p50: number;
		p99: number;
		max: number;
	}
	interface Result {
		requests: Histogram & { total: number };
		latency: Histogram;
		duration: number;
		non2xx: number;
		errors: number;
		timeouts: number;
		statusCodeStats: Record<string, { count: number }>;
	}
	function autocannon(options: Options): Promise<Result>;
	export = autocannon;
}
