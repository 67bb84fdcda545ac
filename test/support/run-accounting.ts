import { nameBasedUuid, type TaskDocument } from "../../lib/task";
import type { PostedTask } from "./retrying-client";

/** One fault of a run: when it was injected and when its component was ready again (stack.sh returned). */
export interface FaultWindow {
	startedAt: number;
	readyAt: number;
}

/** A phase of a fault run: its load, posted by retrying clients, and the faults injected meanwhile. */
export interface PhaseRun<Scenario, Fault extends FaultWindow> {
	scenario: Scenario;
	posted: PostedTask[];
	faults: Fault[];
}

/** What became of one phase's posted tasks: the first columns of the fault and HA reports. */
export function taskCounts(posted: PostedTask[], stored: Pick<TaskDocument, "_id" | "title">[]): { cells: string[]; retried: number } {
	const ids = new Set(posted.flatMap(task => (task.acceptedId ? [task.acceptedId] : [])));
	const storedIds = new Set(stored.filter(document => ids.has(document._id)).map(document => document._id));
	const duplicated = stored.length - new Set(stored.map(document => document.title)).size;
	const retried = posted.reduce((sum, task) => sum + task.attempts.length - (task.acceptedId ? 1 : 0), 0);
	return { cells: [String(ids.size), String(storedIds.size), String(ids.size - storedIds.size), String(duplicated), String(retried)], retried };
}

/** Every posted task got its 202, with the id its Idempotency-Key names. */
export function expectEveryTaskAccepted(posted: PostedTask[], expected: number): void {
	expect(posted).toHaveLength(expected);
	expect(posted.filter(task => task.failure).map(task => `${task.title}: ${task.failure}`)).toEqual([]);
	expect(posted.filter(task => task.acceptedId !== nameBasedUuid(`idempotency-key:${task.key}`))).toEqual([]);
}

/** Every accepted task is stored exactly once, and nothing else of the run. */
export function expectStoredExactlyOnce(posted: PostedTask[], documents: Pick<TaskDocument, "_id" | "title">[]): void {
	const acceptedIds = posted.flatMap(task => (task.acceptedId ? [task.acceptedId] : [])).sort();
	expect(documents.map(document => document._id).sort()).toEqual(acceptedIds);
	expect(new Set(documents.map(document => document.title)).size).toBe(documents.length);
}
