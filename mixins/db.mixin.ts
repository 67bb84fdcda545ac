import type { ServiceSchema } from "moleculer";
import DbService from "moleculer-db";
import MongoAdapter from "moleculer-db-adapter-mongo";
import { config, type ClusterConfig } from "../lib/config";

/**
 * moleculer-db over one collection (the Moleculer template's `createDbServiceMixin`): MongoDB when
 * MONGO_URI is set, else NeDB in memory, as the embedded default runs.
 */
export function createDbServiceMixin(collection: string, settings: ClusterConfig = config): Partial<ServiceSchema> {
	const adapter = settings.mongoUri
		? new MongoAdapter(
				settings.mongoUri,
				{
					// The adapter's mongodb 3.x driver needs the unified topology for MongoDB 6/7.
					useUnifiedTopology: true,
					// Fail a write fast while the server is away; the worker retries the batch with backoff.
					serverSelectionTimeoutMS: 5000,
				},
				settings.dbName,
			)
		: new DbService.MemoryAdapter();
	// moleculer-db's typings declare DbService as a class; at run time it is a service schema.
	return { mixins: [DbService as unknown as Partial<ServiceSchema>], adapter, collection } as Partial<ServiceSchema>;
}
