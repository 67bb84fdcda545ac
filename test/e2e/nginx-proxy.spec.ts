import type { ChildProcessByStdio } from "node:child_process";
import { once } from "node:events";
import type { Readable } from "node:stream";
import { spawnTracked } from "../support/child-processes";
import { connectToStack, inParallel, runTag, type Stack } from "../support/stack";
import { postTask, titled } from "../support/http";

/** What one upstream port received while `traffic` ran, read off the loopback with tcpdump. */
interface Capture {
	/** Connections opened to the upstream (SYN packets). */
	connectionsOpened: number;
	/** The HTTP requests' head lines, header names lower-cased. */
	requests: Map<string, string>[];
}

/**
 * Captures the requests Nginx sends to `port`, as the upstream receives them. A config test
 * that only parses the file would pass a template whose locations drop the server's headers.
 */
async function captureUpstream(port: number, traffic: () => Promise<void>): Promise<Capture> {
	const tcpdump = spawnTracked("tcpdump", ["-i", "lo", "-n", "-l", "-A", "-s", "0", `tcp dst port ${port}`], {
		stdio: ["ignore", "pipe", "pipe"],
	}) as ChildProcessByStdio<null, Readable, Readable>;
	let text = "";
	tcpdump.stdout.setEncoding("latin1").on("data", chunk => (text += chunk));
	let errors = "";
	tcpdump.stderr.setEncoding("utf8").on("data", chunk => (errors += chunk));
	while (!errors.includes("listening on")) {
		if (tcpdump.exitCode !== null) throw new Error(`tcpdump failed: ${errors}`);
		await new Promise(resolve => setTimeout(resolve, 20));
	}
	try {
		await traffic();
		// Let the last packets reach tcpdump's output before it stops.
		await new Promise(resolve => setTimeout(resolve, 300));
	} finally {
		tcpdump.kill("SIGINT");
		await once(tcpdump, "exit");
	}
	const connectionsOpened = text.split("\n").filter(line => / > 127\.0\.0\.1\.\d+: Flags \[S\]/.test(line)).length;
	// tcpdump -A prints each line break of the payload as a bare newline.
	const requests = [...text.matchAll(/(?:GET|POST) \/\S* HTTP\/1\.1\n((?:[^\n]+\n)*)\n/g)].map(
		([, head]) =>
			new Map(
				head
					.split("\n")
					.filter(Boolean)
					.map(line => {
						const colon = line.indexOf(":");
						return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
					}),
			),
	);
	return { connectionsOpened, requests };
}

describe("Nginx in front of the gateways and the RabbitMQ UI", () => {
	let stack: Stack;
	const gatewayPort = (gateway: "flask" | "go") => Number(gateway === "flask" ? stack.env.FLASK_PORT : stack.env.GO_PORT);

	beforeAll(async () => {
		stack = await connectToStack();
	});

	it.each(["flask", "go"] as const)("passes the full header set to api-%s", async gateway => {
		const capture = await captureUpstream(gatewayPort(gateway), async () => {
			const response = await fetch(`${stack.baseUrl}/${gateway}/tasks`, {
				method: "POST",
				headers: { "Content-Type": "application/json", "X-Request-Id": "req-from-client-1" },
				body: JSON.stringify({ title: `${runTag()} headers` }),
			});
			expect(response.status).toBe(202);
			// The gateway takes the id as its own request id and answers with it.
			expect(response.headers.get("x-request-id")).toBe("req-from-client-1");
			const anonymous = await fetch(`${stack.baseUrl}/${gateway}/health/live`);
			expect(anonymous.headers.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
		});
		expect(capture.requests).toHaveLength(2);
		const [post, live] = capture.requests;
		expect(post.get("x-request-id")).toBe("req-from-client-1");
		// Without one from the client, Nginx makes one.
		expect(live.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
		for (const received of capture.requests) {
			expect(received.get("x-forwarded-prefix")).toBe(`/${gateway}`);
			expect(received.get("x-forwarded-for")).toBe("127.0.0.1");
			expect(received.get("x-real-ip")).toBe("127.0.0.1");
			expect(received.get("x-forwarded-proto")).toBe("http");
			expect(received.get("host")).toBe("127.0.0.1");
			// No "Connection: close": the upstream connection stays open for the next request.
			expect(received.has("connection")).toBe(false);
		}
	});

	it.each(["flask", "go"] as const)("reuses its upstream connections to api-%s across many requests", async gateway => {
		const requests = 400;
		const concurrency = 8;
		// Warm the pool first, so that the capture sees reuse only.
		await inParallel(Array.from({ length: concurrency * 2 }), concurrency, () => fetch(`${stack.baseUrl}/${gateway}/health/live`).then(r => r.text()));
		const tag = runTag();
		const capture = await captureUpstream(gatewayPort(gateway), async () => {
			const statuses = await inParallel(Array.from({ length: requests }), concurrency, async (_, index) => {
				const response = await postTask(stack.gatewayUrl(gateway), titled(`${tag} keep-alive ${index}`));
				await response.arrayBuffer();
				return response.status;
			});
			expect(statuses.every(status => status === 202)).toBe(true);
		});
		expect(capture.requests).toHaveLength(requests);
		// One connection per request without keep-alive; with it, no more than ran at once.
		expect(capture.connectionsOpened).toBeLessThanOrEqual(concurrency);
	});

	it("passes the same header set to the RabbitMQ management API, and keeps that connection too", async () => {
		const port = Number(stack.env.RABBITMQ_MANAGEMENT_PORT);
		const auth = `Basic ${Buffer.from("guest:guest").toString("base64")}`;
		await fetch(`${stack.baseUrl}/rabbitmq/api/overview`, { headers: { Authorization: auth } }).then(r => r.text());
		const capture = await captureUpstream(port, async () => {
			for (let i = 0; i < 20; i++) {
				const response = await fetch(`${stack.baseUrl}/rabbitmq/api/queues/%2F/${stack.taskQueue}`, {
					headers: { Authorization: auth, "X-Request-Id": `rabbit-${i}` },
				});
				expect(response.status).toBe(200);
				await response.arrayBuffer();
			}
		});
		expect(capture.requests).toHaveLength(20);
		capture.requests.forEach((received, i) => {
			expect(received.get("x-request-id")).toBe(`rabbit-${i}`);
			expect(received.get("x-forwarded-for")).toBe("127.0.0.1");
			expect(received.get("host")).toBe("127.0.0.1");
			expect(received.has("connection")).toBe(false);
			expect(received.has("x-forwarded-prefix")).toBe(false);
		});
		expect(capture.connectionsOpened).toBeLessThanOrEqual(1);
	});
});
