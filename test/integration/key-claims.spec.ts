import { randomUUID } from "node:crypto";
import { taskIdOfKey } from "../../lib/http/idempotency";
import { KEY_CLAIMS_COLLECTION, type KeyClaim } from "../../lib/store/key-claims";
import { newTask, type QueuedTask } from "../../lib/task";
import TasksService from "../../services/tasks.service";
import { TestDatabase } from "../support/test-database";

/** Idempotency-Key claims (lib/store/key-claims.ts) on the MongoDB-protocol server: one winner per key, whoever asks. */
describe("Idempotency-Key claims on a MongoDB-protocol server", () => {
	const store = new TestDatabase();
	const { broker } = store;
	const claim = (task: QueuedTask) => broker.call<KeyClaim, { task: QueuedTask }>("tasks.claimKey", { task });

	beforeAll(() => store.start(TasksService, "tasks"));
	afterAll(() => store.stop());

	it("lets one of eight claims of a key at once win, and answers each of the others with the winner", async () => {
		const id = taskIdOfKey(`claimed-at-once-${randomUUID()}`);
		const tasks = Array.from({ length: 8 }, (_, n) => newTask(`body ${n}`, n % 2 ? "go" : "flask", id));

		const claims = await Promise.all(tasks.map(claim));
		const winners = claims.filter(result => result.first);
		expect(winners).toHaveLength(1);
		const winner = winners[0].holder;
		expect(claims.map(result => result.holder)).toEqual(tasks.map(() => winner));
		expect(
			await store.db
				.collection(KEY_CLAIMS_COLLECTION)
				.find({ _id: id as never })
				.toArray(),
		).toEqual([{ _id: id, title: winner.title, source: winner.source, created_at: new Date(winner.created_at) }]);
	});

	it("answers a later claim of a key with the first task, its date to the millisecond", async () => {
		const first = newTask("the first", "flask", taskIdOfKey(`claimed-later-${randomUUID()}`));
		expect(await claim(first)).toEqual({ holder: first, first: true });
		expect(await claim({ ...first, title: "another", created_at: new Date().toISOString() })).toEqual({ holder: first, first: false });
	});
});
