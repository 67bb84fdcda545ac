import DbService from "moleculer-db";
import MongoAdapter from "moleculer-db-adapter-mongo";
import { config } from "../config";
import { toDocument, type ProcessedTask, type TaskDocument } from "../task";
import { LIST_INDEX, LIST_SORT, readBudgetMs, ReadGate, type ListPlan, type TaskQuery } from "./task-reads";

/** The adapter of the `tasks` collection: MongoDB when MONGO_URI is set, else in-memory NeDB. */
export type TaskAdapter = MongoAdapter | InstanceType<typeof DbService.MemoryAdapter>;

/** The calls the store makes on the driver's collection (the adapter's mongodb 3.x has no typings). */
interface TaskCollection {
	insertMany(documents: TaskDocument[], options: object): Promise<unknown>;
	find(filter: object, options: object): { toArray(): Promise<TaskDocument[]> };
	findOne(filter: object, options: object): Promise<TaskDocument | null>;
	estimatedDocumentCount(options: object): Promise<number>;
	countDocuments(filter: object, options: object): Promise<number>;
	createIndex(key: object, options: object): Promise<unknown>;
	dropIndex(name: string): Promise<unknown>;
}

/** Every store read carries this as `maxTimeMS`: the store stops the read, not only the caller. */
const READ_BUDGET_MS = readBudgetMs(config.requestTimeoutMs);
/** The list index of earlier versions: LIST_INDEX serves every read it served. */
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

/**
 * What the tasks service asks of its collection, in the shapes MongoDB serves from an index
 * (see task-reads.ts); the in-memory adapter of the embedded default answers the same questions.
 * Reads go through gates that shed them while the store cannot serve them in time.
 */
export class TaskStore {
	/** Whether the store answers estimatedDocumentCount from metadata (MongoDB), not by a scan. */
	private countIsCheap = true;
	// One slow list at a time per node; gets are quick on MongoDB, so a few may run at once.
	private readonly listGate = new ReadGate({ concurrency: 1, maxWaiting: 100, firstPauseMs: 20_000, maxPauseMs: 120_000 });
	private readonly getGate = new ReadGate({ concurrency: 4, maxWaiting: 200, firstPauseMs: 1_000, maxPauseMs: 10_000 });

	constructor(private readonly adapter: TaskAdapter) {}

	private get collection(): TaskCollection | null {
		return this.adapter instanceof MongoAdapter ? (this.adapter.collection as unknown as TaskCollection) : null;
	}

	/** The list index, and what the server can count cheaply; once connected. */
	async prepare(): Promise<void> {
		const collection = this.collection;
		if (!collection) return;
		await collection.createIndex(LIST_INDEX.key, { name: LIST_INDEX.name });
		// Each index on the collection is one more write per stored task.
		await collection.dropIndex(SUPERSEDED_INDEX).catch((err: { codeName?: string }) => {
			if (err.codeName !== "IndexNotFound") throw err;
		});
		// FerretDB counts by reading every document, and ignores maxTimeMS on `count`.
		const info = await (this.adapter as unknown as { db: { admin(): { command(command: object): Promise<object> } } }).db.admin().command({ buildInfo: 1 });
		this.countIsCheap = !("ferretdbVersion" in info);
	}

	/** Inserts each task once by id: a redelivered task never adds a second document. */
	async insertProcessed(tasks: ProcessedTask[]): Promise<void> {
		if (tasks.length === 0) return;
		const documents = tasks.map(toDocument);
		const collection = this.collection;
		if (collection) {
			try {
				await collection.insertMany(documents, { ordered: false, writeConcern: { w: "majority", j: true } });
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
	}

	/** One page of LIST_SORT, `limit` bounded by the store's own clock. */
	async findPage(plan: ListPlan): Promise<TaskDocument[]> {
		const collection = this.collection;
		if (!collection) {
			return this.adapter.find({
				query: plan.filter,
				sort: ["-created_at", "-_id"] as unknown as string,
				offset: plan.skip,
				limit: plan.limit,
			}) as Promise<TaskDocument[]>;
		}
		const options = { sort: LIST_SORT, ...(plan.skip > 0 ? { skip: plan.skip } : {}), limit: plan.limit, maxTimeMS: READ_BUDGET_MS };
		return this.listGate.run(READ_BUDGET_MS, () => collection.find(plan.filter, options).toArray());
	}

	/** A single findOne by `_id` (moleculer-db's get asks `{_id: {$in: [id]}}`). */
	async findTask(id: string): Promise<TaskDocument | null> {
		const collection = this.collection;
		if (!collection) return this.adapter.findById(id) as Promise<TaskDocument | null>;
		return this.getGate.run(READ_BUDGET_MS, () => collection.findOne({ _id: id }, { maxTimeMS: READ_BUDGET_MS }));
	}

	async countMatching(query: TaskQuery): Promise<number> {
		const collection = this.collection;
		if (!collection) return this.adapter.count({ query });
		return this.listGate.run(READ_BUDGET_MS, () => collection.countDocuments(query, { maxTimeMS: READ_BUDGET_MS }));
	}

	/** The collection's size from metadata, or null where counting would scan it (FerretDB). */
	async estimatedTotal(): Promise<number | null> {
		const collection = this.collection;
		if (!collection) return this.adapter.count({});
		if (!this.countIsCheap) return null;
		return this.listGate.run(READ_BUDGET_MS, () => collection.estimatedDocumentCount({ maxTimeMS: READ_BUDGET_MS }));
	}
}
