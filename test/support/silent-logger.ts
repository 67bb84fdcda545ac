import type { QueueLogger } from "../../lib/queue/task-queue";

/** For queues under test whose recoveries the test asserts itself. */
export const SILENT_LOGGER: QueueLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
