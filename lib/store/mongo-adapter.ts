import MongoAdapter from "moleculer-db-adapter-mongo";
import { MongoClient, ObjectId, type Collection, type Db, type Document, type Filter, type MongoClientOptions } from "mongodb";

/** The server's error code for a second document with the same unique key. */
export const MONGO_DUPLICATE_KEY = 11000;

/**
 * moleculer-db-adapter-mongo on the current MongoDB driver. The adapter's last release (0.5.0)
 * asks for mongodb 3.x, out of support; package.json's `overrides` hands it the project's driver
 * instead, and this subclass replaces the few methods that lean on what 3.x had and 6.x has
 * not: events on `Db` (a deprecation warning at every start on 3.7, gone in 6), `ObjectID`
 * (renamed `ObjectId`), and the result shapes of the write methods (`ops`, `value`). Every other
 * method, and moleculer-db's interface to it, is the adapter's own.
 */
export class MongoDriverAdapter extends MongoAdapter {
	declare uri: string;
	declare opts: MongoClientOptions;
	declare dbName: string;
	declare client: MongoClient;
	declare db: Db;
	declare collection: Collection<Document>;
	declare service: { schema: { collection: string }; logger: { info(message: string): void; warn(message: string): void } };

	constructor(uri: string, opts: MongoClientOptions, dbName: string) {
		super(uri, opts, dbName);
	}

	async connect(): Promise<void> {
		this.client = new MongoClient(this.uri, this.opts);
		await this.client.connect();
		this.db = this.client.db(this.dbName);
		this.collection = this.db.collection(this.service.schema.collection);
		this.service.logger.info("MongoDB adapter has connected successfully.");
	}

	/** Waits for the pool to close, so that a stopped broker leaves no socket behind. */
	async disconnect(): Promise<void> {
		await this.client?.close();
	}

	stringToObjectID(id: unknown): unknown {
		if (typeof id === "string" && id.length !== 12 && ObjectId.isValid(id)) return ObjectId.createFromHexString(id);
		return id;
	}

	// The adapter's typings promise an array here; it returns, and moleculer-db expects, the document.
	async insert(entity: Document): Promise<object[]> {
		await this.collection.insertOne(entity);
		// The driver sets `_id` on the entity it inserted, as 3.x returned it in `ops`.
		return entity as unknown as object[];
	}

	async insertMany(entities: Document[]): Promise<Document[]> {
		await this.collection.insertMany(entities);
		return entities;
	}

	/** The updated document, or null (moleculer-db answers 404) when there is none. */
	async updateById(id: string | number, update: Document): Promise<object> {
		return (await this.collection.findOneAndUpdate(this.byId(id), update, { returnDocument: "after" })) as object;
	}

	async removeById(id: string | number): Promise<Document | null> {
		return this.collection.findOneAndDelete(this.byId(id));
	}

	private byId(id: string | number): Filter<Document> {
		return { _id: this.stringToObjectID(id) } as Filter<Document>;
	}
}
