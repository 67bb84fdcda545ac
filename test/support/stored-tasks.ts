import type { Collection } from "mongodb";
import { LIST_SORT, listPlan } from "../../lib/store/task-reads";
import type { TaskDocument } from "../../lib/task";

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

/** Deletes the tasks created at or after `since` whose title starts with `prefix`, by `_id`. */
export async function removeCreatedSince(tasks: Collection<TaskDocument>, since: Date, prefix: string): Promise<void> {
	const ours = (await createdSince(tasks, since)).filter(task => task.title.startsWith(prefix));
	for (const task of ours) await tasks.deleteOne({ _id: task._id });
}
