// Forked by postTasksFromChild: posts `amount` tasks at `url` with 64 connections, sends the figures back.
import { postTasks } from "./load";

const [url, amount] = process.argv.slice(2);
void postTasks(url, { connections: 64, amount: Number(amount) }).then(figures => {
	process.send?.(figures);
	process.exit(0);
});
