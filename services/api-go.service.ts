import type { ServiceSchema } from "moleculer";
import { config } from "../lib/config";
import TaskGatewayMixin, { type TaskGatewaySettings } from "../mixins/task-gateway.mixin";

/** Replaces the original's Go (Gin) producer: the task API on GO_PORT, stamping tasks "go". */
const ApiGoService: ServiceSchema<TaskGatewaySettings> = {
	name: "api-go",
	mixins: [TaskGatewayMixin],
	settings: { port: config.goPort, source: "go" },
};

export default ApiGoService;
