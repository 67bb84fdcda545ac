import { randomUUID } from "node:crypto";
import { stackCommand } from "../../scripts/stack-control";
import { connectToStack, leaveStackHealthy, type Stack } from "../support/stack";
import { eventually } from "../support/eventually";

/**
 * A real server error: FerretDB killed as a crash would, then reads through Nginx. Their 5xx
 * bodies name the error's type and the request id, and nothing of the inside (addresses, ports,
 * the driver, nodes, actions, stack traces). FerretDB comes back before the suite ends.
 */

const INTERNALS = ["127.0.0.1", "27017", "ECONNREFUSED", "mongo", "ferret", "tasks.list", "tasks.get", "api-flask-1", "api-go-1", "    at "];

describe("a store outage, as clients see it", () => {
	let stack: Stack;

	beforeAll(async () => {
		stack = await connectToStack();
		await stackCommand("kill", "ferretdb");
	});
	afterAll(async () => {
		await stackCommand("restart", "ferretdb");
		const healthy = await leaveStackHealthy();
		await eventually(
			"the list served again",
			async () => ((await fetch(`${healthy.gatewayUrl("flask")}/tasks`)).status === 200 ? true : undefined),
			60_000,
			500,
		);
	}, 120_000);

	it.each([
		["flask", "/tasks"],
		["go", `/tasks/${randomUUID()}`],
	] as const)(
		"GET /%s%s answers a 5xx with the error's type and the request id only",
		async (gateway, route) => {
			const requestId = `sec-outage-${gateway}-${process.pid}`;
			const res = await fetch(`${stack.gatewayUrl(gateway)}${route}`, { headers: { "X-Request-Id": requestId } });
			expect(res.status).toBeGreaterThanOrEqual(500);
			expect(res.headers.get("content-type")).toMatch(/^application\/json/);
			const text = await res.text();
			const body = JSON.parse(text) as Record<string, unknown>;
			expect(Object.keys(body).sort()).toEqual(["code", "message", "name", "requestId", "type"]);
			expect(body).toMatchObject({ code: res.status, requestId });
			expect(body.type).toMatch(/^[A-Z_]+$/);
			for (const internal of INTERNALS)
				expect({ internal, found: text.toLowerCase().includes(internal.toLowerCase()) }).toEqual({ internal, found: false });
		},
		60_000,
	);
});
