import type { ServiceBroker } from "moleculer";
import type { TaskPage } from "../lib/store/task-reads";

interface CommandArgs {
	options: Record<string, string | boolean | undefined>;
	[operand: string]: unknown;
}

const QUEUE_CONNECT_TIMEOUT_MS = 5000;

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
