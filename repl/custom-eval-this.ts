import nodeRepl, { type REPLEval, type REPLServer, type ReplOptions } from "node:repl";

/** Marks the wrapped `repl.start`, so that a second call (a second REPL) does not wrap it again. */
const PASSES_SERVER = Symbol("passesReplServerToCustomEval");

/**
 * moleculer-repl 0.8 finds the broker through `this.context` in its custom eval function, and
 * Node 26 calls a custom eval without `this` (Node 24 passed the REPL server): every line typed
 * then fails with "Cannot read properties of undefined (reading 'context')" (moleculer-repl
 * issue #80, fix unreleased). From this call on, `repl.start` calls a custom eval on its server.
 */
export function passReplServerToCustomEval(): void {
	const start = nodeRepl.start as typeof nodeRepl.start & { [PASSES_SERVER]?: true };
	if (start[PASSES_SERVER]) return;
	const wrapped = (options?: string | ReplOptions): REPLServer => {
		const evaluate = typeof options === "object" ? options.eval : undefined;
		if (!evaluate) return start(options);
		const server = start({
			...(options as ReplOptions),
			eval(...args: Parameters<REPLEval>) {
				evaluate.apply(server, args);
			},
		});
		return server;
	};
	nodeRepl.start = Object.assign(wrapped, { [PASSES_SERVER]: true as const });
}
