import DbService from "moleculer-db";
import type { Collection } from "mongodb";
import { toDocument, type ProcessedTask, type TaskDocument } from "../task";
import { MONGO_DUPLICATE_KEY, MongoDriverAdapter } from "./mongo-adapter";
import { boundedRead } from "./read-shedding";
import { LIST_INDEX, LIST_SORT, type ListPlan, type TaskQuery } from "./task-reads";

/** The adapter of the `tasks` collection: MongoDB when MONGO_URI is set, else in-memory NeDB. */
export type TaskAdapter = MongoDriverAdapter | InstanceType<typeof DbService.MemoryAdapter>;

/** The list index of earlier versions: LIST_INDEX serves every read it served. */
const SUPERSEDED_INDEX = "created_at_-1";
const NEDB_UNIQUE_VIOLATION = "uniqueViolated";
/**
 * Write errors that belong to the one document, whatever the store's state: a bad value, a
 * collection validator, a document or key too large. Any other write error may be the store's
 * (FerretDB reports some of its own troubles per document) and fails the whole write.
 */
const MONGO_DOCUMENT_ERRORS = new Set([2, 121, 10334, 17280, 17419]);

interface BulkWriteFailure {
	writeErrors?: { index: number; code: number; errmsg?: string }[];
	writeConcernError?: unknown;
}

/** A task of an insert that the store refused while it stored the others, by its place in the batch. */
export interface RefusedInsert {
	index: number;
	reason: "duplicate_id" | "store_refused";
	detail: string;
}

/**
 * The write errors of an unordered insert when each belongs to its document: every other
 * document of the batch is stored. Null when the failure is the store's (a write concern error,
 * or a write error that may be transient): the caller retries the batch.
 */
function documentErrors(err: BulkWriteFailure): BulkWriteFailure["writeErrors"] | null {
	const writeErrors = err.writeErrors ?? [];
	if (err.writeConcernError || writeErrors.length === 0) return null;
	return writeErrors.every(error => error.code === MONGO_DUPLICATE_KEY || MONGO_DOCUMENT_ERRORS.has(error.code)) ? writeErrors : null;
}

/**
 * A duplicate id is a redelivery when the stored task has the same title, whichever gateway
 * stamped its source: a client's retry with its Idempotency-Key may reach the other gateway.
 */
const sameTask = (stored: Pick<TaskDocument, "title"> | null | undefined, document: TaskDocument) => stored?.title === document.title;

const collision = (index: number, document: TaskDocument): RefusedInsert => ({
	index,
	reason: "duplicate_id",
	detail: `id ${JSON.stringify(document._id)} already belongs to another task`,
});

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

	/**
	 * Inserts each task once by id: a redelivered task never adds a second document. Resolves with
	 * the tasks refused one by one while the others were stored: an id that a task with another
	 * title already has, or a document the store cannot hold. Throws when the
	 * write as a whole failed.
	 */
	async insertProcessed(tasks: ProcessedTask[]): Promise<RefusedInsert[]> {
		if (tasks.length === 0) return [];
		const documents = tasks.map(toDocument);
		const collection = this.collection;
		if (collection) {
			try {
				// An insert, not an upsert: FerretDB runs an upsert as a lookup plus an insert per
				// document, about fifty times slower, and the first processing's stamp is kept either way.
				await collection.insertMany(documents, { ordered: false, writeConcern: { w: "majority", j: true } });
				return [];
			} catch (err) {
				const writeErrors = documentErrors(err as BulkWriteFailure);
				if (!writeErrors) throw err;
				return this.refusedAmong(collection, documents, writeErrors);
			}
		}
		const refused: RefusedInsert[] = [];
		for (const [index, document] of documents.entries()) {
			try {
				await this.adapter.insert(document);
			} catch (err) {
				if ((err as { errorType?: string }).errorType !== NEDB_UNIQUE_VIOLATION) throw err;
				if (!sameTask((await this.adapter.findById(document._id)) as TaskDocument | null, document)) refused.push(collision(index, document));
			}
		}
		return refused;
	}

	/** Which per-document write errors refuse a task: a duplicate id is none when it is the same task again. */
	private async refusedAmong(
		collection: Collection<TaskDocument>,
		documents: TaskDocument[],
		writeErrors: NonNullable<BulkWriteFailure["writeErrors"]>,
	): Promise<RefusedInsert[]> {
		const duplicates = writeErrors.filter(error => error.code === MONGO_DUPLICATE_KEY);
		// One lookup by `_id` equality each, which every store serves from the `_id` index; FerretDB
		// answers an `$in` by reading every document, and a redelivered batch is all duplicates.
		const stored = await Promise.all(duplicates.map(error => collection.findOne({ _id: documents[error.index]._id }, { projection: { title: 1 } })));
		const storedById = new Map(stored.filter(document => document !== null).map(document => [document._id, document]));
		const refused: RefusedInsert[] = [];
		for (const { index, code, errmsg } of writeErrors) {
			const document = documents[index];
			if (code !== MONGO_DUPLICATE_KEY)
				refused.push({ index, reason: "store_refused", detail: `the store refused the task: ${errmsg ?? `error ${code}`}` });
			else if (!sameTask(storedById.get(document._id), document)) refused.push(collision(index, document));
		}
		return refused;
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
