import nodeRepl, { type REPLEval, type REPLServer } from "node:repl";
import { PassThrough } from "node:stream";
import { passReplServerToCustomEval } from "../../../repl/custom-eval-this";

/** What `this` a custom eval sees for one line typed into a REPL started with it. */
async function thisOfCustomEval(): Promise<{ server: REPLServer; seen: unknown }> {
	const input = new PassThrough();
	let server: REPLServer | undefined;
	const seen = new Promise<unknown>(resolve => {
		const evaluate: REPLEval = function (this: unknown, _code, _context, _file, callback) {
			resolve(this);
			callback(null, undefined);
		};
		server = nodeRepl.start({ input, output: new PassThrough(), terminal: false, eval: evaluate });
	});
	input.write("nodes\n");
	const result = { server: server!, seen: await seen };
	result.server.close();
	return result;
}

describe("moleculer-repl's eval on Node 26", () => {
	const start = nodeRepl.start;
	afterAll(() => {
		nodeRepl.start = start;
	});

	it("is called without its REPL server by Node itself, which is why the shim exists", async () => {
		expect((await thisOfCustomEval()).seen).toBeUndefined();
	});

	it("is called on its REPL server once a node opens its REPL, so that it finds the broker there", async () => {
		passReplServerToCustomEval();
		const { server, seen } = await thisOfCustomEval();
		expect(seen).toBe(server);
	});

	it("wraps Node's repl.start once, however many REPLs a node opens", () => {
		passReplServerToCustomEval();
		const wrapped = nodeRepl.start;
		passReplServerToCustomEval();
		expect(nodeRepl.start).toBe(wrapped);
	});
});
