import http from "node:http";

/**
 * HTTP from a chosen loopback address (127.0.0.2, 127.0.0.3, ...): to Nginx, each is another
 * client, outside the allow-list and the exemption from the limits, which name 127.0.0.1.
 */
export interface EdgeAnswer {
	status: number;
	headers: http.IncomingHttpHeaders;
	body: string;
}

/** A keep-alive agent whose connections all leave from `localAddress`. */
export function clientAt(localAddress: string): http.Agent {
	return new http.Agent({ keepAlive: true, localAddress } as http.AgentOptions);
}

export function request(
	agent: http.Agent,
	url: string,
	init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<EdgeAnswer> {
	return new Promise((resolve, reject) => {
		const req = http.request(url, { agent, method: init.method ?? "GET", headers: init.headers, timeout: init.timeoutMs ?? 10_000 }, res => {
			let body = "";
			res.setEncoding("utf8");
			res.on("data", chunk => (body += chunk));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
			res.on("error", reject);
		});
		// Named as fetch names a request given up after AbortSignal.timeout.
		req.on("timeout", () => req.destroy(Object.assign(new Error(`${init.method ?? "GET"} ${url} timed out`), { name: "TimeoutError" })));
		req.on("error", reject);
		req.end(init.body);
	});
}

/** POST a JSON body. */
export const post = (agent: http.Agent, url: string, body: string, headers: Record<string, string> = {}) =>
	request(agent, url, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, body });
