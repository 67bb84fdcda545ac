import type { Context, Service, ServiceSchema } from "moleculer";
import DbService, { type DbServiceSettings } from "moleculer-db";
import MongoAdapter from "moleculer-db-adapter-mongo";
import { config, type ClusterConfig } from "../lib/config";
import type { StoredTask } from "../lib/task";
import { asMixin } from "../lib/as-mixin";
import { decodeCursor, encodeCursor, EntityNotFoundError, LIST_INDEX, LIST_SORT, listPlan, pageRules, readBudgetMs, ReadGate, storedQuery, type ListPlan, type TaskQuery } from "../lib/task-reads";

/** The adapter for the `tasks` collection: MongoDB when MONGO_URI is set, else in-memory NeDB. */
export function createTaskAdapter(settings: ClusterConfig = config) {
	if (!settings.mongoUri) return new DbService.MemoryAdapter();
	return new MongoAdapter(settings.mongoUri, {
		// The adapter's mongodb 3.x driver needs the unified topology for MongoDB 6/7.
		useUnifiedTopology: true,
		// Fail a write fast while the server is away; the worker retries the batch with backoff.
		serverSelectionTimeoutMS: 5000,
	}, settings.dbName);
}

// moleculer-db's typings declare DbService as a class; at run time it is a service schema.
const DbServiceSchema = DbService as unknown as Partial<ServiceSchema>;

/** A stored task as the store returns it. */
type TaskDocument = Record<string, unknown> & { _id: string; created_at: Date };

/** The calls reads make on the driver's collection (the adapter's mongodb 3.x has no typings). */
interface ReadableCollection {
	find(filter: object, options: object): { toArray(): Promise<TaskDocument[]> };
	findOne(filter: object, options: object): Promise<TaskDocument | null>;
	estimatedDocumentCount(options: object): Promise<number>;
	countDocuments(filter: object, options: object): Promise<number>;
}

interface StoreMethods {
	storeProcessed(tasks: StoredTask[]): Promise<void>;
	findPage(plan: ListPlan): Promise<TaskDocument[]>;
	findTask(id: string): Promise<TaskDocument | null>;
	estimatedTotal(): Promise<number | null>;
	countMatching(query: TaskQuery): Promise<number>;
}

interface StoreVars {
	adapter: ReturnType<typeof createTaskAdapter>;
	/** Whether the store answers estimatedDocumentCount from metadata (MongoDB), not by a scan. */
	countIsCheap: boolean;
	listGate: ReadGate;
	getGate: ReadGate;
	transformDocuments(ctx: Context, params: object, docs: unknown): Promise<unknown>;
}

type StoreSchema = Partial<ServiceSchema<DbServiceSettings, StoreMethods, StoreVars>> & {
	collection: string;
	afterConnected(this: Service & StoreVars): Promise<void>;
};

type StoreService = Service<DbServiceSettings> & StoreVars & StoreMethods;

interface ListParams {
	page?: number;
	pageSize?: number;
	after?: string;
	query?: TaskQuery;
}

/** Every store read carries this as `maxTimeMS`: the store stops the read, not only the caller. */
const READ_BUDGET_MS = readBudgetMs(config.requestTimeoutMs);
const DEFAULT_PAGE_SIZE = 20;
const SUPERSEDED_INDEX = "created_at_-1";

const NEDB_UNIQUE_VIOLATION = "uniqueViolated";
const MONGO_DUPLICATE_KEY = 11000;

interface BulkWriteFailure {
	writeErrors?: { code: number }[];
	writeConcernError?: unknown;
}

/**
 * An unordered insert stores every new task of the batch and reports the ids that exist as
 * duplicate-key errors: a redelivered task is then already stored, which is success. (An
 * insert, not an upsert: FerretDB runs an upsert as a lookup plus an insert per document, about
 * fifty times slower, and the first processing's stamp is kept either way.)
 */
function onlyDuplicates(err: BulkWriteFailure): boolean {
	const writeErrors = err.writeErrors ?? [];
	return !err.writeConcernError && writeErrors.length > 0 && writeErrors.every(error => error.code === MONGO_DUPLICATE_KEY);
}

/** The stored document: the task id is the document's `_id` (SPEC "Stored task"). */
function toDocument(task: StoredTask) {
	return {
		_id: task.id,
		title: task.title,
		source: task.source,
		created_at: new Date(task.created_at),
		status: task.status,
		processed_by: task.processed_by,
		processed_at: new Date(task.processed_at),
		node_id: task.node_id,
	};
}

/**
 * moleculer-db over the `tasks` collection, with one write path of its own: `storeProcessed`
 * inserts each task once by id (the document's `_id`), so a redelivered message never adds a
 * second document.
 */
const TaskStoreMixin: StoreSchema = {
	mixins: [DbServiceSchema],
	collection: "tasks",
	settings: {
		idField: "id",
		fields: ["id", "title", "source", "created_at", "status", "processed_by", "processed_at", "node_id"],
		pageSize: 20,
		maxPageSize: 100,
		maxLimit: 1000,
	},
	actions: {
		/**
		 * Newest first, from the index on LIST_SORT: `?page=` for the first pages (moleculer-db's
		 * shape), `?after=<next>` for any depth. `total` is the collection's estimated count, and
		 * null where counting would scan the collection (FerretDB).
		 */
		list: {
			params: {
				$$strict: "remove",
				...pageRules,
				query: {
					type: "record",
					optional: true,
					key: { type: "enum", values: ["id", "title", "source", "status", "processed_by", "node_id"] },
					value: { type: "string", max: 200 },
				},
			},
			async handler(this: StoreService, ctx: Context<ListParams>) {
				const pageSize = ctx.params.pageSize ?? DEFAULT_PAGE_SIZE;
				const after = ctx.params.after === undefined ? undefined : decodeCursor(ctx.params.after);
				const page = after ? null : (ctx.params.page ?? 1);
				const query = ctx.params.query && storedQuery(ctx.params.query);
				const plan = listPlan(pageSize, page ?? 1, after, query);
				// A filtered list counts its matches (an operator's question, bounded like every read).
				const [found, total] = await Promise.all([this.findPage(plan), query ? this.countMatching(query) : this.estimatedTotal()]);
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
			params: { id: { type: "string", min: 1, max: 100 } },
			async handler(this: StoreService, ctx: Context<{ id: string }>) {
				const document = await this.findTask(ctx.params.id);
				if (!document) throw new EntityNotFoundError(ctx.params.id);
				return this.transformDocuments(ctx, {}, document);
			},
		},
	},
	methods: {
		async storeProcessed(tasks: StoredTask[]): Promise<void> {
			if (tasks.length === 0) return;
			const documents = tasks.map(toDocument);
			if (this.adapter instanceof MongoAdapter) {
				try {
					await this.adapter.collection.insertMany(documents as never[], {
						ordered: false,
						writeConcern: { w: "majority", j: true },
					});
				} catch (err) {
					if (!onlyDuplicates(err as BulkWriteFailure)) throw err;
				}
				return;
			}
			for (const document of documents) {
				try {
					await this.adapter.insert(document);
				} catch (err) {
					if ((err as { errorType?: string }).errorType !== NEDB_UNIQUE_VIOLATION) throw err;
				}
			}
		},
		/** One page of LIST_SORT, `limit` bounded by the store's own clock. */
		async findPage(plan: ListPlan): Promise<TaskDocument[]> {
			if (!(this.adapter instanceof MongoAdapter)) {
				return this.adapter.find({ query: plan.filter, sort: ["-created_at", "-_id"] as unknown as string, offset: plan.skip, limit: plan.limit }) as Promise<TaskDocument[]>;
			}
			const collection = this.adapter.collection as unknown as ReadableCollection;
			return this.listGate.run(READ_BUDGET_MS, () => collection.find(plan.filter, {
				sort: LIST_SORT,
				...(plan.skip > 0 ? { skip: plan.skip } : {}),
				limit: plan.limit,
				maxTimeMS: READ_BUDGET_MS,
			}).toArray());
		},
		/** A single findOne by `_id` (moleculer-db's get asks `{_id: {$in: [id]}}`). */
		async findTask(id: string): Promise<TaskDocument | null> {
			if (!(this.adapter instanceof MongoAdapter)) return this.adapter.findById(id) as Promise<TaskDocument | null>;
			const collection = this.adapter.collection as unknown as ReadableCollection;
			return this.getGate.run(READ_BUDGET_MS, () => collection.findOne({ _id: id }, { maxTimeMS: READ_BUDGET_MS }));
		},
		async countMatching(query: TaskQuery): Promise<number> {
			if (!(this.adapter instanceof MongoAdapter)) return this.adapter.count({ query });
			const collection = this.adapter.collection as unknown as ReadableCollection;
			return this.listGate.run(READ_BUDGET_MS, () => collection.countDocuments(query, { maxTimeMS: READ_BUDGET_MS }));
		},
		async estimatedTotal(): Promise<number | null> {
			if (!(this.adapter instanceof MongoAdapter)) return this.adapter.count({});
			if (!this.countIsCheap) return null;
			const collection = this.adapter.collection as unknown as ReadableCollection;
			return this.listGate.run(READ_BUDGET_MS, () => collection.estimatedDocumentCount({ maxTimeMS: READ_BUDGET_MS }));
		},
	},
	created() {
		// One slow list at a time per node; gets are quick on MongoDB, so a few may run at once.
		this.listGate = new ReadGate({ concurrency: 1, maxWaiting: 100, firstPauseMs: 20_000, maxPauseMs: 120_000 });
		this.getGate = new ReadGate({ concurrency: 4, maxWaiting: 200, firstPauseMs: 1_000, maxPauseMs: 10_000 });
		this.countIsCheap = true;
	},
	async afterConnected() {
		if (this.adapter instanceof MongoAdapter) {
			await this.adapter.collection.createIndex(LIST_INDEX.key, { name: LIST_INDEX.name });
			// The list index of earlier versions: LIST_INDEX serves every read it served, and each
			// index on the collection is one more write per stored task.
			await this.adapter.collection.dropIndex(SUPERSEDED_INDEX).catch((err: { codeName?: string }) => {
				if (err.codeName !== "IndexNotFound") throw err;
			});
			// FerretDB counts by reading every document, and ignores maxTimeMS on `count`.
			const info = await (this.adapter as unknown as { db: { admin(): { command(command: object): Promise<object> } } }).db.admin().command({ buildInfo: 1 });
			this.countIsCheap = !("ferretdbVersion" in info);
		}
	},
};

export default asMixin(TaskStoreMixin);
