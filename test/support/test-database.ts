import { randomUUID } from "node:crypto";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { MongoClient, type Db } from "mongodb";
import { config } from "../../lib/config";
import { createDbServiceMixin } from "../../mixins/db.mixin";

/** The MongoDB-protocol server of the integration suites: the local stack's FerretDB unless TEST_MONGO_URI names another. */
export const TEST_MONGO_URI = process.env.TEST_MONGO_URI ?? "mongodb://127.0.0.1:27017/";

/** `schema` with the project's db mixin on `collection` of database `dbName` at `mongoUri`, in place of its own mixins. */
export function onDatabase<Schema extends Pick<ServiceSchema, "name">>(schema: Schema, collection: string, mongoUri: string, dbName: string) {
	return { ...schema, mixins: [createDbServiceMixin(collection, { ...config, mongoUri, dbName })] };
}

/**
 * A service on a database of its own on the test server, named at random so that suites never
 * meet, with a client to read what it wrote. `stop` drops the database again.
 */
export class TestDatabase {
	readonly name = `test_${randomUUID().slice(0, 8)}`;
	readonly broker = new ServiceBroker({ logger: false });
	private readonly client = new MongoClient(TEST_MONGO_URI, { serverSelectionTimeoutMS: 3000 });

	/** The database itself, for reading what the service stored. */
	get db(): Db {
		return this.client.db(this.name);
	}

	/** Starts `schema` with the db mixin on `collection` of this database. */
	async start(schema: Pick<ServiceSchema, "name">, collection: string): Promise<void> {
		await this.client.connect().catch((err: Error) => {
			throw new Error(`No MongoDB-protocol server at ${TEST_MONGO_URI} (${err.message}); start it with \`npm run stack:up\``);
		});
		this.broker.createService(onDatabase(schema, collection, TEST_MONGO_URI, this.name));
		await this.broker.start();
	}

	/** Stops the service, drops the database and closes the client. */
	async stop(): Promise<void> {
		try {
			await this.broker.stop();
			await this.db.dropDatabase();
		} finally {
			await this.client.close();
		}
	}
}
