import type { Service, ServiceSchema } from "moleculer";
import DbService, { type DbServiceSettings } from "moleculer-db";
import MongoAdapter from "moleculer-db-adapter-mongo";
import { config, type ClusterConfig } from "../lib/config";
import type { StoredTask } from "../lib/task";
import { asMixin } from "../lib/as-mixin";

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

interface StoreMethods {
	storeProcessed(tasks: StoredTask[]): Promise<void>;
}

interface StoreVars {
	adapter: ReturnType<typeof createTaskAdapter>;
}

type StoreSchema = Partial<ServiceSchema<DbServiceSettings, StoreMethods, StoreVars>> & {
	collection: string;
	afterConnected(this: Service & StoreVars): Promise<void>;
};

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
	},
	async afterConnected() {
		if (this.adapter instanceof MongoAdapter) {
			await this.adapter.collection.createIndex({ created_at: -1 });
		}
	},
};

export default asMixin(TaskStoreMixin);
