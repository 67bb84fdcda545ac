import net from "node:net";
import path from "node:path";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { STACK } from "../../scripts/stack-control";
import { connectToStack, inParallel, type Stack } from "../support/stack";
import { clientAt, post, request, type EdgeAnswer } from "../support/edge-client";
import { eventually } from "../support/eventually";

/**
 * Nginx at the edge of the running local stack, seen by clients on other loopback addresses
 * (127.0.0.2 and up): Nginx tells them apart from 127.0.0.1 as it would tell hosts apart.
 * POSTs here carry `{}`, which the gateways refuse (422): the limits are Nginx's, and no task is queued.
 */

const GUEST = { Authorization: `Basic ${Buffer.from("guest:guest").toString("base64")}` };

function jsonError(answer: EdgeAnswer) {
	expect(answer.headers["content-type"]).toMatch(/^application\/json/);
	return JSON.parse(answer.body) as { name: string; code: number; type: string; message: string; requestId: string };
}

/** A raw connection from `localAddress` that writes `head` and then stays silent, or trickles `trickle` each second. */
function stalledClient(port: number, localAddress: string, head: string, trickle?: string) {
	const socket = net.connect({ host: "127.0.0.1", port, localAddress });
	const openedAt = Date.now();
	let received = "";
	let timer: NodeJS.Timeout | undefined;
	socket.on("connect", () => {
		socket.write(head);
		if (trickle) timer = setInterval(() => socket.writable && socket.write(trickle), 1000);
	});
	socket.setEncoding("utf8").on("data", chunk => (received += chunk));
	socket.on("error", () => undefined);
	const closed = new Promise<{ afterMs: number; received: string }>(resolve =>
		socket.on("close", () => {
			clearInterval(timer);
			resolve({ afterMs: Date.now() - openedAt, received });
		}),
	);
	return { socket, closed };
}

describe("Nginx at the edge", () => {
	let stack: Stack;
	const agents: ReturnType<typeof clientAt>[] = [];
	const client = (address: string) => {
		const agent = clientAt(address);
		agents.push(agent);
		return agent;
	};
	const listed = (setting: string, address: string) => setting.split(/[\s,]+/).includes(address);

	beforeAll(async () => {
		stack = await connectToStack();
	});
	afterAll(() => agents.forEach(agent => agent.destroy()));

	it.each(["127.0.0.1", "127.0.0.2"])("opens /rabbitmq/ to %s only if RABBITMQ_UI_ALLOW names it, else answers 403 as JSON", async address => {
		const agent = client(address);
		const allowed = listed(stack.env.RABBITMQ_UI_ALLOW, address);
		for (const route of ["/rabbitmq/api/whoami", "/rabbitmq/", "/rabbitmq/api/queues/%2F"]) {
			const answer = await request(agent, `${stack.baseUrl}${route}`, { headers: { ...GUEST, "X-Request-Id": "sec-ui-1" } });
			if (allowed) {
				expect({ route, status: answer.status }).toEqual({ route, status: 200 });
			} else {
				expect({ route, status: answer.status }).toEqual({ route, status: 403 });
				expect(jsonError(answer)).toEqual({
					name: "ForbiddenError",
					message: "This route is not open to this client.",
					code: 403,
					type: "FORBIDDEN",
					requestId: "sec-ui-1",
				});
			}
		}
		// The default lets this machine in and keeps everyone else out.
		if (stack.env.RABBITMQ_UI_ALLOW === "127.0.0.1,::1") expect(allowed).toBe(address === "127.0.0.1");
	});

	it("never echoes a request id it cannot vouch for into its JSON", async () => {
		const answer = await request(client("127.0.0.2"), `${stack.baseUrl}/rabbitmq/api/whoami`, { headers: { "X-Request-Id": 'a","code":200,"x":"' } });
		expect(answer.status).toBe(403);
		expect(jsonError(answer).requestId).toMatch(/^[0-9a-f]{32}$/);
	});

	it("does not tell its version", async () => {
		const answer = await request(client("127.0.0.2"), `${stack.baseUrl}/flask/health/live`);
		expect(answer.status).toBe(200);
		expect(answer.headers.server).toBe("nginx");
	});

	it("answers a client's POSTs beyond NGINX_POST_RATE and NGINX_POST_BURST with 429, Retry-After and JSON, and leaves an exempt client alone", async () => {
		const rate = Number(stack.env.NGINX_POST_RATE);
		const burst = Number(stack.env.NGINX_POST_BURST);
		const posts = burst + 2 * rate + 40;
		// Fewer in flight than NGINX_POST_CONCURRENCY, so that only the rate refuses.
		const inFlight = Math.max(1, Math.min(4, Number(stack.env.NGINX_POST_CONCURRENCY) - 1));
		const burstFrom = async (address: string) => {
			const agent = client(address);
			const startedAt = Date.now();
			const answers = await inParallel(Array.from({ length: posts }), inFlight, () => post(agent, `${stack.baseUrl}/flask/tasks`, "{}"));
			return { answers, seconds: (Date.now() - startedAt) / 1000 };
		};

		const limited = await burstFrom("127.0.0.3");
		const refused = limited.answers.filter(answer => answer.status === 429);
		const passed = limited.answers.filter(answer => answer.status === 422);
		expect(refused.length + passed.length).toBe(posts);
		expect(refused.length).toBeGreaterThan(0);
		// Nginx lets through the burst and the rate, not more (one token of slack for the clock).
		expect(passed.length).toBeLessThanOrEqual(burst + Math.ceil(rate * limited.seconds) + 1);
		for (const answer of refused) {
			expect(Number(answer.headers["retry-after"])).toBeGreaterThanOrEqual(1);
			expect(jsonError(answer)).toMatchObject({ name: "TooManyRequestsError", code: 429, type: "TOO_MANY_REQUESTS" });
		}

		const exempt = await burstFrom("127.0.0.1");
		const exemptRefused = exempt.answers.filter(answer => answer.status === 429).length;
		expect(exemptRefused === 0).toBe(listed(stack.env.NGINX_LIMIT_EXEMPT, "127.0.0.1"));
	});

	it("makes a client's lists beyond NGINX_LIST_BURST wait and refuses those beyond NGINX_LIST_QUEUE with 429, while another client lists and posts", async () => {
		const rate = Number(stack.env.NGINX_LIST_RATE);
		const burst = Number(stack.env.NGINX_LIST_BURST);
		const queue = Number(stack.env.NGINX_LIST_QUEUE);
		const totalRate = Number(stack.env.NGINX_LIST_TOTAL_RATE);
		const lists = queue + 10;
		const listFrom = (agent: ReturnType<typeof clientAt>, i: number) =>
			request(agent, `${stack.gatewayUrl(i % 2 ? "go" : "flask")}/tasks?pageSize=1`, { timeoutMs: 20_000 });
		const timed = async (send: () => Promise<EdgeAnswer>) => {
			const startedAt = Date.now();
			const answer = await send();
			return { answer, ms: Date.now() - startedAt };
		};

		const flooder = client("127.0.0.9");
		const startedAt = Date.now();
		const flood = inParallel(Array.from({ length: lists }), lists, (_, i) => timed(() => listFrom(flooder, i)));
		// While the flooder's lists wait their turn, another client's list and post go through at once.
		await sleep(200);
		const other = client("127.0.0.10");
		const otherList = await timed(() => listFrom(other, 0));
		const otherPost = await post(other, `${stack.baseUrl}/flask/tasks`, "{}");
		// A get by id is no list: the flooder's own is answered at once.
		const ownGet = await timed(() => request(flooder, `${stack.gatewayUrl("go")}/tasks/no-such-task`));
		const answers = await flood;
		const seconds = (Date.now() - startedAt) / 1000;

		// The other client's list waits at most behind the flooder's queue in the limit on all lists.
		expect(otherList.answer.status).toBe(200);
		expect(otherList.ms).toBeLessThan(1000 + ((queue - burst) / totalRate) * 1000);
		expect(otherPost.status).toBe(422);
		expect(ownGet.answer.status).toBe(404);
		expect(ownGet.ms).toBeLessThan(1000);
		const refused = answers.filter(({ answer }) => answer.status === 429);
		const served = answers.filter(({ answer }) => answer.status === 200);
		expect(refused.length + served.length).toBe(lists);
		expect(refused.length).toBeGreaterThan(0);
		// Nginx takes the queue and what the rate drained meanwhile, not more (one of slack for the clock).
		expect(served.length).toBeLessThanOrEqual(queue + 1 + Math.ceil(rate * seconds) + 1);
		// The last of the queue waited about (queue - burst) / rate seconds instead of being refused.
		expect(Math.max(...served.map(({ ms }) => ms))).toBeGreaterThanOrEqual(((queue - burst) / rate) * 500);
		for (const { answer } of refused) {
			expect(Number(answer.headers["retry-after"])).toBeGreaterThanOrEqual(1);
			expect(jsonError(answer)).toMatchObject({ name: "TooManyRequestsError", code: 429, type: "TOO_MANY_REQUESTS" });
		}
	});

	it("refuses a client's POST beyond NGINX_POST_CONCURRENCY in flight with 429, while other clients post", async () => {
		const limit = Number(stack.env.NGINX_POST_CONCURRENCY);
		const head = `POST /flask/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n`;
		// Each holds a POST whose body never comes: in flight until Nginx's body timeout.
		const holders = Array.from({ length: limit }, () => stalledClient(Number(stack.env.NGINX_PORT), "127.0.0.4", head));
		try {
			const one = await eventually(
				"the next POST of 127.0.0.4 refused",
				async () => {
					const answer = await post(client("127.0.0.4"), `${stack.baseUrl}/flask/tasks`, "{}");
					return answer.status === 429 ? answer : undefined;
				},
				5000,
			);
			expect(jsonError(one)).toMatchObject({ code: 429, type: "TOO_MANY_REQUESTS" });
			expect((await post(client("127.0.0.5"), `${stack.baseUrl}/flask/tasks`, "{}")).status).toBe(422);
		} finally {
			holders.forEach(holder => holder.socket.destroy());
		}
	});

	it("drops slowloris clients within NGINX_CLIENT_TIMEOUT while serving everyone else", async () => {
		const timeoutMs = Number(stack.env.NGINX_CLIENT_TIMEOUT) * 1000;
		const port = Number(stack.env.NGINX_PORT);
		// Headers a line a second that never end, and POST bodies that stop coming.
		const slow = [
			...Array.from({ length: 40 }, () => stalledClient(port, "127.0.0.6", "GET /flask/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n", "X-Slow: 1\r\n")),
			...Array.from({ length: 5 }, () =>
				stalledClient(
					port,
					"127.0.0.6",
					"POST /flask/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
				),
			),
		];
		try {
			const served: number[] = [];
			const others = client("127.0.0.7");
			const allClosed = Promise.all(slow.map(connection => connection.closed));
			let done = false;
			void allClosed.then(() => (done = true));
			while (!done) {
				served.push((await request(others, `${stack.baseUrl}/go/health/live`, { timeoutMs: 2000 })).status);
				await sleep(200);
			}
			const closed = await allClosed;
			expect(served.length).toBeGreaterThan(10);
			expect(served.every(status => status === 200)).toBe(true);
			for (const connection of closed) {
				expect(connection.received).toBe("");
				expect(connection.afterMs).toBeLessThan(timeoutMs + 5000);
			}
		} finally {
			slow.forEach(connection => connection.socket.destroy());
		}
	}, 60_000);

	it("logs each request as one JSON line with its request id", async () => {
		const id = `sec-log-${process.pid}-${Date.now()}`;
		await request(client("127.0.0.8"), `${stack.baseUrl}/flask/health/live`, { headers: { "X-Request-Id": id } });
		const line = await eventually("the request in the access log", async () => {
			const lines = readFileSync(path.join(STACK, "logs/nginx-access.log"), "utf8").trim().split("\n");
			return lines.map(text => JSON.parse(text) as Record<string, unknown>).find(entry => entry.request_id === id);
		});
		expect(line).toMatchObject({ client: "127.0.0.8", method: "GET", uri: "/flask/health/live", status: 200, request_id: id });
	});
});
