import type { TaskPage } from "../../lib/store/task-reads";
import type { AcceptedTask } from "../../lib/task";

/** POST <gatewayUrl>/tasks with a raw body: a title as JSON, or whatever a test sends to be refused. */
export function postTask(
	gatewayUrl: string,
	body: string | Buffer,
	headers: Record<string, string> = { "Content-Type": "application/json" },
): Promise<Response> {
	return fetch(`${gatewayUrl}/tasks`, { method: "POST", headers, body });
}

/** The JSON body of POST /tasks for a title. */
export const titled = (title: string): string => JSON.stringify({ title });

/** An error as the gateways answer it (moleculer-web's JSON error); `data` lists a validation's problems. */
export interface ApiError {
	name: string;
	code: number;
	type: string;
	message: string;
	data: { field: string; message: string }[];
}

/** The JSON body of an answer, as the type the test expects: a task, a page or an error. */
export async function readJson<T = AcceptedTask | TaskPage | ApiError>(res: Response): Promise<T> {
	return (await res.json()) as T;
}
