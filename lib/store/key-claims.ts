import type { QueuedTask } from "../task";
import { MONGO_DUPLICATE_KEY, MongoDriverAdapter } from "./mongo-adapter";
import type { TaskAdapter } from "./task-store";

/** The collection of claimed Idempotency-Keys, beside `tasks` in the same database. */
export const KEY_CLAIMS_COLLECTION = "task_keys";

/** A claim: the first task POSTed with a key, by the task id the key names. */
interface KeyClaimDocument {
	_id: string;
	title: string;
	source: string;
	created_at: Date;
}

/** What a claim answers: the task that holds the key, and whether this claim made it so. */
export interface KeyClaim {
	holder: QueuedTask;
	first: boolean;
}

/**
 * Which task holds each Idempotency-Key, decided once for the whole cluster: of two gateways
 * that claim one key at the same moment, the store's unique `_id` lets one win, and the other
 * reads the winner. A claim is kept as long as tasks are: a key names its task for good.
 * The embedded default, one process, keeps its claims in memory.
 */
export class KeyClaims {
	private readonly inMemory = new Map<string, QueuedTask>();

	constructor(private readonly adapter: TaskAdapter) {}

	/** Claims the key `task.id` names for `task`, unless an earlier task holds it. */
	async claim(task: QueuedTask): Promise<KeyClaim> {
		if (!(this.adapter instanceof MongoDriverAdapter)) {
			const earlier = this.inMemory.get(task.id);
			if (earlier) return { holder: earlier, first: false };
			this.inMemory.set(task.id, task);
			return { holder: task, first: true };
		}
		const claims = this.adapter.db.collection<KeyClaimDocument>(KEY_CLAIMS_COLLECTION);
		try {
			// Acknowledged by a majority, on disk: a claim lost in a failover would let the key win twice.
			const document = { _id: task.id, title: task.title, source: task.source, created_at: new Date(task.created_at) };
			await claims.insertOne(document, { writeConcern: { w: "majority", j: true } });
			return { holder: task, first: true };
		} catch (err) {
			if ((err as { code?: unknown }).code !== MONGO_DUPLICATE_KEY) throw err;
		}
		const holder = await claims.findOne({ _id: task.id });
		// Pruned by an operator between the insert and the read: the key is free again.
		if (!holder) return this.claim(task);
		return { holder: { id: holder._id, title: holder.title, source: holder.source, created_at: holder.created_at.toISOString() }, first: false };
	}
}
