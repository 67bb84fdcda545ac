import type { Context, ServiceSchema } from "moleculer";
import type { DbServiceSettings } from "moleculer-db";
import type { StoredTask } from "../lib/task";
import TaskStoreMixin, { createTaskAdapter } from "../mixins/task-store.mixin";

/**
 * Owns the `tasks` collection. Every cluster node runs one beside its role, so that a worker's
 * writes and a gateway's reads stay on the node; `call tasks.list` in the REPL reads it too.
 */
const TasksService: ServiceSchema<DbServiceSettings, { storeProcessed(tasks: StoredTask[]): Promise<void> }> & { adapter: unknown } = {
	name: "tasks",
	mixins: [TaskStoreMixin],
	adapter: createTaskAdapter(),
	actions: {
		// Tasks enter only through the queue: moleculer-db's writing actions stay closed.
		create: false,
		insert: false,
		update: false,
		remove: false,
		storeProcessed: {
			params: { tasks: { type: "array", items: "object" } },
			async handler(ctx: Context<{ tasks: StoredTask[] }>) {
				await this.storeProcessed(ctx.params.tasks);
				return { stored: ctx.params.tasks.length };
			},
		},
	},
};

export default TasksService;
