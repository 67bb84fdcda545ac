import type { Context, Service, ServiceSchema } from "moleculer";
import type { DbServiceSettings } from "moleculer-db";
import { createDbServiceMixin } from "../mixins/db.mixin";
import { EntityNotFoundError } from "../lib/errors";
import { decodeCursor, encodeCursor, listPlan, pageRules, storedQuery, type TaskQuery } from "../lib/store/task-reads";
import { readBudgetMs, readShedding } from "../lib/store/read-shedding";
import { KeyClaims, type KeyClaim } from "../lib/store/key-claims";
import { TaskStore, type TaskAdapter } from "../lib/store/task-store";
import { MATCHABLE_FIELDS, processedTaskRule, queuedTaskRule, TASK_FIELDS, type ProcessedTask, type QueuedTask } from "../lib/task";

interface TasksVars {
	adapter: TaskAdapter;
	store: TaskStore;
	keyClaims: KeyClaims;
	transformDocuments(ctx: Context, params: object, docs: unknown): Promise<unknown>;
}

/** moleculer-db's settings, with the page size this service always sets. */
type TasksSettings = DbServiceSettings & { pageSize: number };
type TasksService = Service<TasksSettings> & TasksVars;

interface ListParams {
	page?: number;
	pageSize?: number;
	after?: string;
	query?: TaskQuery;
}

/**
 * Owns the `tasks` collection, and beside it the gateways' Idempotency-Key claims. Every cluster
 * node runs one beside its role, so that a worker's writes and a gateway's reads and claims stay
 * on the node; `call tasks.list` in the REPL reads it too.
 * Tasks enter only through the queue: moleculer-db's writing actions stay closed, and
 * `storeProcessed` inserts each task once by id, so a redelivered message never adds a document.
 */
const TasksService: ServiceSchema<TasksSettings, Record<string, never>, TasksVars, TasksService> & { afterConnected(this: TasksService): Promise<void> } = {
	name: "tasks",
	mixins: [createDbServiceMixin("tasks")],
	settings: {
		idField: "id",
		fields: [...TASK_FIELDS],
		pageSize: 20,
		maxPageSize: 100,
		maxLimit: 1000,
	},
	actions: {
		create: false,
		insert: false,
		update: false,
		remove: false,
		// moleculer-db's find and count take any MongoDB query: callable on the store's own node
		// only, never from another node on the bus. The API and the REPL read through list and get.
		find: { visibility: "protected" },
		count: { visibility: "protected" },
		storeProcessed: {
			params: { tasks: { type: "array", items: processedTaskRule } },
			async handler(this: TasksService, ctx: Context<{ tasks: ProcessedTask[] }>) {
				const refused = await this.store.insertProcessed(ctx.params.tasks);
				return { stored: ctx.params.tasks.length - refused.length, refused };
			},
		},
		/**
		 * Binds an Idempotency-Key, by the task id it names, to the first task POSTed with it,
		 * whichever gateway took it: answers the task that holds the key (see KeyClaims).
		 */
		claimKey: {
			params: { task: queuedTaskRule },
			handler(this: TasksService, ctx: Context<{ task: QueuedTask }>): Promise<KeyClaim> {
				return this.keyClaims.claim(ctx.params.task);
			},
		},
		/**
		 * Newest first, from the index on LIST_SORT: `?page=` for the first pages (moleculer-db's
		 * shape), `?after=<next>` for any depth. `total` is the collection's estimated count, and
		 * null where counting would scan the collection (FerretDB).
		 */
		list: {
			// Two lists at a time per node and twenty waiting: a page is a few index steps, and a
			// flood of lists must leave the store's time to the workers' writes and the gets. Excess
			// lists wait rather than being refused: a refused client asks again at once, and a
			// flood of refusals costs more than the lists (docs/store-driver-and-shedding.md).
			...readShedding({ concurrency: 2, maxQueueSize: 20 }),
			params: {
				$$strict: "remove",
				...pageRules,
				query: {
					type: "record",
					optional: true,
					key: { type: "enum", values: MATCHABLE_FIELDS },
					value: { type: "string", max: 200 },
				},
			},
			async handler(this: TasksService, ctx: Context<ListParams>) {
				const pageSize = ctx.params.pageSize ?? this.settings.pageSize;
				const after = ctx.params.after === undefined ? undefined : decodeCursor(ctx.params.after);
				const page = after ? null : (ctx.params.page ?? 1);
				const query = ctx.params.query && storedQuery(ctx.params.query);
				const plan = listPlan(pageSize, page ?? 1, after, query);
				const budgetMs = readBudgetMs(ctx);
				// A filtered list counts its matches (an operator's question, bounded like every read).
				const [found, total] = await Promise.all([
					this.store.findPage(plan, budgetMs),
					query ? this.store.countMatching(query, budgetMs) : this.store.estimatedTotal(budgetMs),
				]);
				const documents = found.slice(0, pageSize);
				const last = documents.at(-1);
				return {
					rows: await this.transformDocuments(ctx, {}, documents),
					total,
					page,
					pageSize,
					totalPages: total === null ? null : Math.ceil(total / pageSize),
					next: found.length > pageSize && last ? encodeCursor({ createdAt: last.created_at, id: last._id }) : null,
				};
			},
		},
		get: {
			// A get is one step on the `_id` index: more may run at once than lists.
			...readShedding({ concurrency: 8, maxQueueSize: 100 }),
			params: { id: { type: "string", min: 1, max: 100 } },
			async handler(this: TasksService, ctx: Context<{ id: string }>) {
				const document = await this.store.findTask(ctx.params.id, readBudgetMs(ctx));
				if (!document) throw new EntityNotFoundError(ctx.params.id);
				return this.transformDocuments(ctx, {}, document);
			},
		},
	},
	created() {
		this.store = new TaskStore(this.adapter);
		this.keyClaims = new KeyClaims(this.adapter);
	},
	async afterConnected() {
		await this.store.prepare();
	},
};

export default TasksService;
