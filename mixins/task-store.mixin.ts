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
 * inserts each task once by id, so a redelivered message never adds a second document.
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
				// $setOnInsert keeps the first processing's stamp if a message comes back.
				await this.adapter.collection.bulkWrite(
					documents.map(document => ({
						// The adapter's typings take ObjectId ids; ours are UUID strings.
						updateOne: { filter: { _id: document._id as never }, update: { $setOnInsert: document }, upsert: true },
					})),
					{ ordered: false, writeConcern: { w: "majority", j: true } },
				);
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
