import { InvalidCursorError, PageBeyondReachError } from "../errors";
import type { ProcessedTask } from "../task";

/**
 * What `GET /tasks` and `GET /tasks/:id` ask of the store, in the shapes MongoDB serves from an
 * index: newest first by `{created_at: -1, _id: -1}` (the `_id` breaks ties between tasks of the
 * same millisecond, so a page boundary never skips or repeats one), one `findOne` by `_id`.
 */
export const LIST_SORT = { created_at: -1, _id: -1 } as const;
/** Created by the tasks service at start; it serves LIST_SORT and the keyset filter below. */
export const LIST_INDEX = { key: LIST_SORT, name: "created_at_-1__id_-1" } as const;

/**
 * Equality on stored fields, for operators (`call tasks.list {"query": {...}}` in the REPL); the
 * HTTP API passes none. `id` names the document's `_id`.
 */
export type TaskQuery = Record<string, string>;

/** Turns the caller's field names into the document's (`id` is `_id`). */
export function storedQuery(query: TaskQuery): TaskQuery {
	return Object.fromEntries(Object.entries(query).map(([field, value]) => [field === "id" ? "_id" : field, value]));
}

/** A page of the list, as `tasks.list` answers it (dates as JSON carries them). */
export interface TaskPage {
	rows: ProcessedTask[];
	/** The collection's estimated size, or the filter's matches; null where counting would scan. */
	total: number | null;
	/** The page number, or null for a page after a cursor. */
	page: number | null;
	pageSize: number;
	totalPages: number | null;
	/** The cursor of the next page; null on the last one. */
	next: string | null;
}

/** How a caller names a page of the list: the same rules at the gateways and in the store. */
export const pageRules = {
	page: { type: "number", integer: true, positive: true, convert: true, optional: true },
	pageSize: { type: "number", integer: true, positive: true, max: 100, convert: true, optional: true },
	after: { type: "string", min: 1, max: 200, optional: true },
} as const;

/** The position after the last task of a page: its `created_at` and `_id`. */
export interface ListPosition {
	createdAt: Date;
	id: string;
}

export interface ListPlan {
	filter: Record<string, unknown>;
	skip: number;
	/** One more than the page, to know whether a next page exists without counting. */
	limit: number;
}

/** Opaque to clients: base64url of `[created_at in ms, _id]`. */
export function encodeCursor(position: ListPosition): string {
	return Buffer.from(JSON.stringify([position.createdAt.getTime(), position.id])).toString("base64url");
}

export function decodeCursor(cursor: string): ListPosition {
	let decoded: unknown;
	try {
		decoded = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
	} catch {
		throw new InvalidCursorError();
	}
	if (!Array.isArray(decoded) || decoded.length !== 2) throw new InvalidCursorError();
	const [ms, id] = decoded as unknown[];
	if (!Number.isSafeInteger(ms) || typeof id !== "string" || id.length === 0 || id.length > 100) throw new InvalidCursorError();
	return { createdAt: new Date(ms as number), id };
}

/**
 * How deep pages by number reach into the list, newest first: the store walks every skipped entry
 * of the index, so a far page number would make one request cost as much as reading the whole
 * collection. Deeper tasks are read after a cursor.
 */
export const NUMBERED_PAGES_REACH = 1000;

/**
 * A page by number (moleculer-db's shape, for the first pages: the store walks `skip` entries of
 * the index) or after a cursor (a range on the index, as fast at any depth). The position is
 * `created_at < x, or created_at = x and _id < y`, spelled with the bound on `created_at` apart:
 * FerretDB's SQLite turns that bound into a range on the index (a row value comparison would
 * make it walk the index from the newest entry), and MongoDB sets its index bounds from it.
 */
export function listPlan(pageSize: number, page: number, after?: ListPosition, query: TaskQuery = {}): ListPlan {
	if (!after && page * pageSize > NUMBERED_PAGES_REACH) throw new PageBeyondReachError(NUMBERED_PAGES_REACH);
	if (!after) return { filter: { ...query }, skip: (page - 1) * pageSize, limit: pageSize + 1 };
	return {
		filter: {
			...query,
			created_at: { $lte: after.createdAt },
			$or: [{ created_at: { $lt: after.createdAt } }, { _id: { $lt: after.id } }],
		},
		skip: 0,
		limit: pageSize + 1,
	};
}
