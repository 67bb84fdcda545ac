// Forked by postTasksFromChild: posts `amount` tasks at `url` with 64 connections, at most
// `requestsPerSecond` (0: as fast as they are answered), and sends the figures back.
import { postTasks } from "./load";

const [url, amount, requestsPerSecond] = process.argv.slice(2);
void postTasks(url, { connections: 64, amount: Number(amount), requestsPerSecond: Number(requestsPerSecond) }).then(figures => {
	process.send?.(figures);
	process.exit(0);
});
