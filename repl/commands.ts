import type { ServiceBroker } from "moleculer";
import type { TaskPage } from "../lib/store/task-reads";

interface CommandArgs {
	options: Record<string, string | boolean | undefined>;
	[operand: string]: unknown;
}

const QUEUE_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_DEAD_LETTERS = 10;

/** The count operand of `dead` and `replay`: a positive integer, DEFAULT_DEAD_LETTERS when left out. */
function countOf(args: CommandArgs): number {
	const count = args.count === undefined ? DEFAULT_DEAD_LETTERS : Number(args.count);
	if (!Number.isInteger(count) || count < 1) throw new Error(`the count must be a positive integer, got "${String(args.count)}"`);
	return count;
}

/** The operator's own REPL commands (moleculer-repl `customCommands`). */
export const replCommands = [
	{
		command: "queue",
		description: "Depth and consumers of the task queue and its dead-letter queue",
		async action(broker: ServiceBroker) {
			await broker.taskQueue.whenConnected(QUEUE_CONNECT_TIMEOUT_MS);
			console.table([await broker.taskQueue.depth()]);
		},
	},
	{
		command: "dead [count]",
		description: `The first dead-lettered messages (default ${DEFAULT_DEAD_LETTERS}) with their reason, size and first bytes; they stay where they are`,
		async action(broker: ServiceBroker, args: CommandArgs) {
			const count = countOf(args);
			await broker.taskQueue.whenConnected(QUEUE_CONNECT_TIMEOUT_MS);
			const letters = await broker.taskQueue.deadLetters(count);
			if (letters.length === 0) return void console.log("the dead-letter queue is empty");
			console.table(letters);
		},
	},
	{
		command: "replay [count]",
		description: `Moves the first dead-lettered messages (default ${DEFAULT_DEAD_LETTERS}) back to the task queue, each confirmed before it leaves the dead-letter queue`,
		async action(broker: ServiceBroker, args: CommandArgs) {
			const count = countOf(args);
			await broker.taskQueue.whenConnected(QUEUE_CONNECT_TIMEOUT_MS);
			console.log(`${await broker.taskQueue.replayDeadLetters(count)} messages moved back to the task queue`);
		},
	},
	{
		command: "post <title>",
		description: "Post a task through a gateway, as POST /tasks does",
		options: [{ option: "--via <gateway>", description: "api-flask (default) or api-go" }],
		async action(broker: ServiceBroker, args: CommandArgs) {
			const gateway = typeof args.options.via === "string" ? args.options.via : "api-flask";
			const accepted = await broker.call(`${gateway}.enqueue`, { title: args.title });
			console.log(accepted);
		},
	},
	{
		command: "latest [count]",
		description: "The newest processed tasks (default 10)",
		async action(broker: ServiceBroker, args: CommandArgs) {
			const pageSize = Math.min(Number(args.count ?? 10) || 10, 100);
			const page = await broker.call<TaskPage, object>("tasks.list", { pageSize });
			console.table(
				page.rows.map(({ id, title, source, processed_by, node_id, created_at }) => ({
					id,
					title,
					source,
					processed_by,
					node_id,
					created_at,
				})),
			);
			// The list is newest first by itself; total is null where counting would scan (FerretDB).
			if (page.total !== null) console.log(`about ${page.total} tasks stored`);
		},
	},
];
