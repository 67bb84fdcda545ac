import type { ChildProcessWithoutNullStreams } from "node:child_process";
import path from "node:path";
import { stripVTControlCharacters } from "node:util";
import { connectToStack, runTag, type Stack } from "../support/stack";
import { spawnTracked } from "../support/child-processes";
import { eventually } from "../support/eventually";
import { postTask, titled } from "../support/http";
import { ROOT } from "../../scripts/stack-control";
import type { AcceptedTask } from "../../lib/task";

const PROMPT = "notes-tasks $";

/** `npm run repl` driven through pipes: each command's output ends at the next prompt. */
class Repl {
	private output = "";
	readonly exited: Promise<number | null>;

	constructor(private readonly child: ChildProcessWithoutNullStreams) {
		const collect = (chunk: Buffer) => (this.output += stripVTControlCharacters(chunk.toString()));
		child.stdout.on("data", collect);
		child.stderr.on("data", collect);
		this.exited = new Promise(resolve => child.once("exit", code => resolve(code)));
	}

	static start(): Repl {
		// warn: the broker's info logs would only interleave with the command output.
		return new Repl(
			spawnTracked(path.join(ROOT, "scripts/repl.sh"), [], { cwd: ROOT, env: { ...process.env, LOG_LEVEL: "warn" } }) as ChildProcessWithoutNullStreams,
		);
	}

	async untilPrompt(from = 0, timeoutMs = 30_000): Promise<string> {
		try {
			return await eventually(
				"the REPL prompt",
				async () => {
					const at = this.output.indexOf(PROMPT, from);
					return at >= 0 ? this.output.slice(from, at) : undefined;
				},
				timeoutMs,
			);
		} catch (err) {
			throw new Error(`${(err as Error).message}; the REPL wrote:\n${this.output}`, { cause: err });
		}
	}

	async run(command: string): Promise<string> {
		const from = this.output.length;
		this.child.stdin.write(`${command}\n`);
		return this.untilPrompt(from, 15_000);
	}

	async quit(): Promise<number | null> {
		this.child.stdin.write("quit\n");
		return this.exited;
	}

	kill(): void {
		if (this.child.exitCode === null) this.child.kill("SIGKILL");
	}
}

describe("a REPL node joining the running cluster", () => {
	let stack: Stack;
	let repl: Repl;
	const tag = runTag();
	const tasks: AcceptedTask[] = [];

	beforeAll(async () => {
		stack = await connectToStack();
		for (const gateway of ["flask", "go"] as const) {
			const response = await postTask(stack.gatewayUrl(gateway), titled(tag));
			expect(response.status).toBe(202);
			tasks.push((await response.json()) as AcceptedTask);
		}
		repl = Repl.start();
		await repl.untilPrompt();
	}, 60_000);

	afterAll(() => repl?.kill());

	it("lists every node of every role with `nodes`", async () => {
		// Nodes announce themselves within a heartbeat; ask again until every one is there.
		const listing = await eventually("every stack node in `nodes`", async () => {
			const output = await repl.run("nodes");
			return stack.nodes.every(node => output.includes(node)) ? output : undefined;
		});
		for (const node of stack.nodes) expect(listing).toMatch(new RegExp(`${node}\\s.*ONLINE`));
	});

	it("reads the stored tasks with `call tasks.list`", async () => {
		// By id: the store serves that from an index however many tasks it holds, where a filter on
		// the title would read every one of them.
		for (const task of tasks) {
			const output = await eventually(`task ${task.id} in \`call tasks.list\``, async () => {
				const page = await repl.run(`call tasks.list {"query":{"id":"${task.id}"},"pageSize":10}`);
				return page.includes(task.id) ? page : undefined;
			});
			expect(output).toMatch(/total: 1\b/);
			expect(output).toContain("status: 'processed'");
		}
	});

	it("shows the task queue and its consumers with `queue`", async () => {
		const output = await repl.run("queue");
		const workers = stack.nodes.filter(node => node.startsWith("worker-")).length;
		// console.table row: index, queue, messages, consumers, deadLettered.
		expect(output).toMatch(new RegExp(`'${stack.taskQueue}'\\s*│\\s*\\d+\\s*│\\s*${workers}\\s*│`));
	});

	it("leaves cleanly with `quit`", async () => {
		expect(await repl.quit()).toBe(0);
	});
});
