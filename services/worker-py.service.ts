import type { ServiceSchema } from "moleculer";
import TaskWorkerMixin, { type TaskWorkerSettings } from "../mixins/task-worker.mixin";

/** Replaces the original's Python worker: consumes the task queue, stamps "worker-py". */
const WorkerPyService: ServiceSchema<TaskWorkerSettings> = {
	name: "worker-py",
	mixins: [TaskWorkerMixin],
	settings: { processedBy: "worker-py" },
};

export default WorkerPyService;
