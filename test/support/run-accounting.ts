import { randomUUID } from "node:crypto";
import { MongoClient } from "mongodb";
import { nameBasedUuid, type TaskDocument } from "../../lib/task";
import { eventually } from "./eventually";
import { deadLetteredCount, queueCounters } from "./rabbitmq";
import type { PlannedTask, PostedTask } from "./retrying-client";
import { gatewaysReady, leaveStackHealthy, removeTestTasks, type Stack } from "./stack";

/** How a run loads the stack: its tag (a prefix of every title), its tasks per phase, and its retrying clients. */
export interface LoadPlan {
	run: string;
	tasksPerPhase: number;
	clients: number;
	/** A client gives up on a task after this. */
	retryBudgetMs: number;
}

/** One fault of a run: when it was injected and when its component was ready again (stack.sh returned). */
export interface FaultWindow {
	startedAt: number;
	readyAt: number;
}

/** A stored task as the worker-idle measure reads it: when and by which node it was stored. */
export interface StoredDocument {
	_id: string;
	title: string;
	processed_at: Date;
	node_id: string;
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

/** The title prefix of a phase's tasks: the run's tag and the phase's number. */
export const phasePrefix = (run: string, phase: number) => `${run} phase-${phase} `;

/** A phase's tasks, alternating between the gateways, each with an Idempotency-Key of its own. */
export function planPhase(run: string, phase: number, tasks: number): PlannedTask[] {
	return Array.from({ length: tasks }, (_, i) => ({
		title: `${phasePrefix(run, phase)}#${i}`,
		key: randomUUID(),
		gateway: i % 2 === 0 ? "flask" : "go",
	}));
}

/** What task_queue held once a run settled. */
export type Drained = { messages_ready: number; messages_unacknowledged: number };

/**
 * Waits until the store holds as many of the run's tasks as were accepted and the queue is empty,
 * then reads the run's documents. Shortfalls are left for the report and the tests to show.
 */
export async function settledRun<D extends Pick<TaskDocument, "_id" | "title">>(
	stack: Stack,
	mongo: MongoClient,
	run: string,
	accepted: number,
	projection: Record<string, 1>,
): Promise<{ documents: D[]; drained: Drained | Error }> {
	const tasks = mongo.db(stack.dbName).collection<TaskDocument>("tasks");
	const ofRun = { title: { $regex: `^${run} ` } };
	await eventually("every accepted task stored", async () => ((await tasks.countDocuments(ofRun)) >= accepted ? true : undefined), 60_000).catch(
		() => undefined,
	);
	const drained = await queueCounters(stack.taskQueue, counters => counters.messages_ready === 0 && counters.messages_unacknowledged === 0, 30_000).catch(
		(err: Error) => err,
	);
	const documents = (await tasks.find(ofRun, { projection }).toArray()) as unknown as D[];
	return { documents, drained };
}

/**
 * A fault or HA run, from its beforeAll to its last test: the stack it loads, the store it reads,
 * its phases, and what the store and the queue held once it settled.
 */
export class FaultRun<Phase extends { posted: PostedTask[] }, Document extends Pick<TaskDocument, "_id" | "title">> {
	stack!: Stack;
	mongo!: MongoClient;
	/** The dead-letter queue's depth before the run: a run that dead-letters nothing leaves it so. */
	deadLetteredBefore = 0;
	readonly phases: Phase[] = [];
	documents: Document[] = [];
	drained: Drained | Error = new Error("the run has not settled");

	constructor(readonly load: LoadPlan) {}

	async open(): Promise<void> {
		this.stack = await gatewaysReady();
		this.mongo = new MongoClient(this.stack.mongoUri, { serverSelectionTimeoutMS: 10_000 });
		this.deadLetteredBefore = await deadLetteredCount(this.stack.taskQueue);
	}

	posted(): PostedTask[] {
		return this.phases.flatMap(phase => phase.posted);
	}

	/** Waits for the accepted tasks to be stored and the queue to drain, then reads the run's documents. */
	async settle(projection: Record<string, 1>): Promise<void> {
		const accepted = this.posted().filter(task => task.acceptedId).length;
		({ documents: this.documents, drained: this.drained } = await settledRun<Document>(this.stack, this.mongo, this.load.run, accepted, projection));
	}

	/** The documents of one phase, by their title prefix. */
	documentsOf(phase: number): Document[] {
		return this.documents.filter(document => document.title.startsWith(phasePrefix(this.load.run, phase)));
	}

	/** Leaves the stack healthy for the next suite and the developer's store without the run's tasks. */
	async close(): Promise<void> {
		await leaveStackHealthy();
		await removeTestTasks(this.mongo, this.stack, `^${this.load.run} `);
	}
}

/** The longest time one worker node stored nothing between `window.startedAt` and the end of the load (`documents`: the workers' only). */
export function longestWorkerGap(window: { startedAt: number; loadDoneAt: number }, documents: StoredDocument[]): { ms: number; node: string } {
	const byNode = new Map<string, number[]>();
	for (const document of documents) {
		const times = byNode.get(document.node_id) ?? [];
		times.push(document.processed_at.getTime());
		byNode.set(document.node_id, times);
	}
	let worst = { ms: 0, node: "" };
	for (const [node, times] of byNode) {
		const sorted = [window.startedAt, ...times.filter(time => time <= window.loadDoneAt).sort((a, b) => a - b)];
		for (let i = 1; i < sorted.length; i++) {
			const gap = sorted[i] - sorted[i - 1];
			if (gap > worst.ms) worst = { ms: gap, node };
		}
	}
	return worst;
}
