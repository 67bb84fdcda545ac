import { IdempotencyKeyReusedError } from "../../../../lib/errors";
import { AcceptedByKey, answerFromStore, taskIdOfKey, type FirstAnswer } from "../../../../lib/http/idempotency";
import { nameBasedUuid } from "../../../../lib/task";

const queued = (title: string, id = "id-1"): FirstAnswer => ({ id, title, source: "flask", created_at: "2026-12-04T19:00:00.000Z", status: "queued" });

describe("Idempotency-Key rules (lib/http/idempotency.ts)", () => {
	it("names one task id per key, the same in every process", () => {
		expect(taskIdOfKey("order-42")).toBe(nameBasedUuid("idempotency-key:order-42"));
		expect(taskIdOfKey("order-42")).not.toBe(taskIdOfKey("order-43"));
	});

	describe("AcceptedByKey", () => {
		it("answers a remembered key with the same title by its first answer, and refuses another title", () => {
			const byKey = new AcceptedByKey(10);
			byKey.remember("k", queued("first"));
			expect(byKey.replay("k", "first")).toEqual(queued("first"));
			expect(() => byKey.replay("k", "other")).toThrow(IdempotencyKeyReusedError);
			expect(byKey.replay("unknown", "first")).toBeUndefined();
		});

		it("keeps the first answer when told of the same task again", () => {
			const byKey = new AcceptedByKey(10);
			byKey.remember("k", queued("first"));
			byKey.remember("k", { ...queued("first"), status: "processed" });
			expect(byKey.replay("k", "first")?.status).toBe("queued");
		});

		it("leaves a key told of with two titles to the store, whatever is told of it later", () => {
			const byKey = new AcceptedByKey(10);
			byKey.remember("k", queued("from gateway A"));
			byKey.remember("k", queued("from gateway B"));
			expect(byKey.replay("k", "from gateway A")).toBeUndefined();
			expect(byKey.replay("k", "from gateway B")).toBeUndefined();
			byKey.remember("k", queued("from gateway A"));
			expect(byKey.replay("k", "from gateway A")).toBeUndefined();
		});

		it("forgets the oldest key beyond its capacity, and no other", () => {
			const byKey = new AcceptedByKey(2);
			byKey.remember("a", queued("a"));
			byKey.remember("b", queued("b"));
			byKey.remember("b", queued("b"));
			expect(byKey.replay("a", "a")).toBeDefined();
			byKey.remember("c", queued("c"));
			expect(byKey.replay("a", "a")).toBeUndefined();
			expect(byKey.replay("b", "b")).toBeDefined();
			expect(byKey.replay("c", "c")).toBeDefined();
		});
	});

	describe("answerFromStore", () => {
		const stored = { id: "id-1", title: "first", source: "go", created_at: new Date("2026-12-04T19:00:00.000Z"), status: "processed" as const };

		it("rebuilds the first answer from the stored task, with the status the API gives it", () => {
			expect(answerFromStore(stored, "first")).toEqual({
				id: "id-1",
				title: "first",
				source: "go",
				created_at: "2026-12-04T19:00:00.000Z",
				status: "processed",
			});
			expect(answerFromStore({ ...stored, created_at: "2026-12-04T19:00:00.000Z" }, "first").created_at).toBe("2026-12-04T19:00:00.000Z");
		});

		it("refuses the key when the stored task has another title", () => {
			expect(() => answerFromStore(stored, "another")).toThrow(IdempotencyKeyReusedError);
		});
	});
});
