import DbService from "moleculer-db";
import type { Collection } from "mongodb";
import { toDocument, type ProcessedTask, type TaskDocument } from "../task";
import { MongoDriverAdapter } from "./mongo-adapter";
import { boundedRead } from "./read-shedding";
import { LIST_INDEX, LIST_SORT, type ListPlan, type TaskQuery } from "./task-reads";

/** The adapter of the `tasks` collection: MongoDB when MONGO_URI is set, else in-memory NeDB. */
export type TaskAdapter = MongoDriverAdapter | InstanceType<typeof DbService.MemoryAdapter>;

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

	constructor(private readonly adapter: TaskAdapter) {}

	private get collection(): Collection<TaskDocument> | null {
		return this.adapter instanceof MongoDriverAdapter ? (this.adapter.collection as unknown as Collection<TaskDocument>) : null;
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
		const info = await (this.adapter as MongoDriverAdapter).db.admin().command({ buildInfo: 1 });
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

	/** One page of LIST_SORT; the store stops the read after `budgetMs`. */
	async findPage(plan: ListPlan, budgetMs: number): Promise<TaskDocument[]> {
		const collection = this.collection;
		if (!collection) {
			return this.adapter.find({
				query: plan.filter,
				sort: ["-created_at", "-_id"] as unknown as string,
				offset: plan.skip,
				limit: plan.limit,
			}) as Promise<TaskDocument[]>;
		}
		const options = { sort: LIST_SORT, ...(plan.skip > 0 ? { skip: plan.skip } : {}), limit: plan.limit };
		return boundedRead(budgetMs, maxTimeMS => collection.find(plan.filter, { ...options, maxTimeMS }).toArray());
	}

	/** A single findOne by `_id` (moleculer-db's get asks `{_id: {$in: [id]}}`). */
	async findTask(id: string, budgetMs: number): Promise<TaskDocument | null> {
		const collection = this.collection;
		if (!collection) return this.adapter.findById(id) as Promise<TaskDocument | null>;
		return boundedRead(budgetMs, maxTimeMS => collection.findOne({ _id: id }, { maxTimeMS }));
	}

	async countMatching(query: TaskQuery, budgetMs: number): Promise<number> {
		const collection = this.collection;
		if (!collection) return this.adapter.count({ query });
		return boundedRead(budgetMs, maxTimeMS => collection.countDocuments(query, { maxTimeMS }));
	}

	/** The collection's size from metadata, or null where counting would scan it (FerretDB). */
	async estimatedTotal(budgetMs: number): Promise<number | null> {
		const collection = this.collection;
		if (!collection) return this.adapter.count({});
		if (!this.countIsCheap) return null;
		return boundedRead(budgetMs, maxTimeMS => collection.estimatedDocumentCount({ maxTimeMS }));
	}
}
