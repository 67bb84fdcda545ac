import type { ServiceSchema } from "moleculer";
import { config } from "../lib/config";
import TaskGatewayMixin, { type TaskGatewaySettings } from "../mixins/task-gateway.mixin";

/** Replaces the original's Flask producer: the task API on FLASK_PORT, stamping tasks "flask". */
const ApiFlaskService: ServiceSchema<TaskGatewaySettings> = {
	name: "api-flask",
	mixins: [TaskGatewayMixin],
	settings: { port: config.flaskPort, source: "flask" },
};

export default ApiFlaskService;
