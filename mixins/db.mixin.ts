import type { ServiceSchema } from "moleculer";
import DbService from "moleculer-db";
import { config, type ClusterConfig } from "../lib/config";
import { MongoDriverAdapter } from "../lib/store/mongo-adapter";

/**
 * moleculer-db over one collection (the Moleculer template's `createDbServiceMixin`): MongoDB when
 * MONGO_URI is set, else NeDB in memory, as the embedded default runs.
 */
export function createDbServiceMixin(collection: string, settings: ClusterConfig = config): Partial<ServiceSchema> {
	const adapter = settings.mongoUri
		? new MongoDriverAdapter(
				settings.mongoUri,
				// Fail a write fast while the server is away; the worker retries the batch with backoff.
				{ serverSelectionTimeoutMS: 5000 },
				settings.dbName,
			)
		: new DbService.MemoryAdapter();
	// moleculer-db's typings declare DbService as a class; at run time it is a service schema.
	return { mixins: [DbService as unknown as Partial<ServiceSchema>], adapter, collection } as Partial<ServiceSchema>;
}
