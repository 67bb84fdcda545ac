import { IdempotencyKeyReusedError } from "../../../../lib/errors";
import { taskIdOfKey, taskOfRetry } from "../../../../lib/http/idempotency";
import { nameBasedUuid, type QueuedTask } from "../../../../lib/task";

describe("Idempotency-Key rules (lib/http/idempotency.ts)", () => {
	it("names one task id per key, the same in every process", () => {
		expect(taskIdOfKey("order-42")).toBe(nameBasedUuid("idempotency-key:order-42"));
		expect(taskIdOfKey("order-42")).not.toBe(taskIdOfKey("order-43"));
	});

	describe("taskOfRetry", () => {
		const holder: QueuedTask = { id: "id-1", title: "first", source: "go", created_at: "2026-12-04T19:00:00.000Z" };

		it("answers a retry with the same body by the task that holds the key, its source and date included", () => {
			expect(taskOfRetry(holder, "first")).toBe(holder);
		});

		it("refuses the key with another body", () => {
			expect(() => taskOfRetry(holder, "another")).toThrow(IdempotencyKeyReusedError);
		});
	});
});
