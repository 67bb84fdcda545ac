import type { Collection } from "mongodb";
import { LIST_SORT, listPlan } from "../../lib/store/task-reads";
import type { TaskDocument } from "../../lib/task";
import { eventually } from "./eventually";
import { runTag } from "./stack";

/**
 * A test's own tasks, read in the two shapes the store serves from an index however many tasks
 * it holds: `_id` equality, and the list's sort walked from the newest. On FerretDB anything else
 * (`$in`, a regex on the title, a count) reads every stored document: minutes on a store of a
 * million, which the suites must stand on.
 */

const PAGE = 1000;

/** The stored ones among `ids`, one lookup by `_id` each. */
export async function findByIds(tasks: Collection<TaskDocument>, ids: string[]): Promise<TaskDocument[]> {
	const found = await Promise.all(ids.map(id => tasks.findOne({ _id: id })));
	return found.filter((task): task is TaskDocument => task !== null);
}

/**
 * Waits until every one of `ids` is stored, and returns their documents in the order of `ids`.
 * Each poll looks up only the ones not found yet; a timeout says how many were.
 */
export async function waitForStored(tasks: Collection<TaskDocument>, ids: string[], timeoutMs: number, intervalMs?: number): Promise<TaskDocument[]> {
	const found = new Map<string, TaskDocument>();
	const lookUpMissing = async () => {
		const missing = ids.filter(id => !found.has(id));
		for (const task of await findByIds(tasks, missing)) found.set(task._id, task);
		return ids.every(id => found.has(id)) ? ids.map(id => found.get(id) as TaskDocument) : undefined;
	};
	return eventually(`${ids.length} tasks stored`, lookUpMissing, timeoutMs, intervalMs).catch((err: Error) => {
		throw new Error(`${err.message}: ${found.size} of ${ids.length} stored`);
	});
}

/** The tasks created at or after `since`, newest first, a page of the list index at a time. */
export async function createdSince(tasks: Collection<TaskDocument>, since: Date): Promise<TaskDocument[]> {
	const found: TaskDocument[] = [];
	for (let filter: object = {}; ;) {
		const page = await tasks.find(filter, { sort: LIST_SORT, limit: PAGE }).toArray();
		const recent = page.filter(task => task.created_at >= since);
		found.push(...recent);
		if (recent.length < page.length || page.length < PAGE) return found;
		const last = page[page.length - 1];
		filter = listPlan(PAGE, 1, { createdAt: last.created_at, id: last._id }).filter;
	}
}

/**
 * The tasks a spec posts to the stack during one run, titled with a prefix of their own (the run's
 * tag and a label): found among the store's others by that prefix and their creation time, so that
 * they can be listed and removed again.
 */
export class RunTasks {
	/** What every title of this run's tasks starts with. */
	readonly prefix: string;
	// Tasks created from here on are this run's, with a second's slack for the stack's clock.
	private readonly since = new Date(Date.now() - 1000);

	constructor(label: string) {
		this.prefix = `${runTag()} ${label} `;
	}

	title(name: string | number): string {
		return `${this.prefix}${name}`;
	}

	/** This run's stored tasks, newest first. */
	async stored(tasks: Collection<TaskDocument>): Promise<TaskDocument[]> {
		return (await createdSince(tasks, this.since)).filter(task => task.title.startsWith(this.prefix));
	}

	/** Deletes this run's stored tasks, by `_id`. */
	async remove(tasks: Collection<TaskDocument>): Promise<void> {
		for (const task of await this.stored(tasks)) await tasks.deleteOne({ _id: task._id });
	}
}
