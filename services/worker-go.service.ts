import type { ServiceSchema } from "moleculer";
import TaskWorkerMixin, { type TaskWorkerSettings } from "../mixins/task-worker.mixin";

/** Replaces the original's Go worker: consumes the same queue, stamps "worker-go". */
const WorkerGoService: ServiceSchema<TaskWorkerSettings> = {
	name: "worker-go",
	mixins: [TaskWorkerMixin],
	settings: { processedBy: "worker-go" },
};

export default WorkerGoService;
