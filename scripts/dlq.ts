/**
 * The dead-letter queue from the command line, as the REPL's `dead` and `replay` commands:
 *
 *   npm run dlq -- list [N]     the first N dead letters (default 10): reason, size, first bytes
 *   npm run dlq -- replay [N]   moves the first N back to the task queue, each publish confirmed
 *                               before its dead letter is acknowledged
 *
 * RabbitMQ and the queue come from the environment, as a node reads them (RABBIT_HOST or
 * RABBIT_HOSTS, RABBIT_QUEUE, ...); when RABBIT_HOST and RABBIT_HOSTS are unset, from the
 * running local stack's .stack/stack.env.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseEnv } from "node:util";
import amqp, { type ChannelModel } from "amqplib";
import { loadConfig } from "../lib/config";
import { listDeadLetters, replayDeadLetters } from "../lib/queue/dead-letter-queue";

const USAGE = "usage: npm run dlq -- list [N] | replay [N]   (N: a positive integer, default 10)";
const STACK_ENV = path.join(__dirname, "../.stack/stack.env");

function environment(): Record<string, string | undefined> {
	if (process.env.RABBIT_HOST || process.env.RABBIT_HOSTS || !existsSync(STACK_ENV)) return process.env;
	return { ...parseEnv(readFileSync(STACK_ENV, "utf8")), ...process.env };
}

/** The first RabbitMQ node of the list that takes the connection. */
async function connect(urls: string[]): Promise<ChannelModel> {
	let lastError: unknown = new Error("no RabbitMQ node configured: set RABBIT_HOST or RABBIT_HOSTS, or start the local stack");
	for (const url of urls) {
		try {
			return await amqp.connect(url, { timeout: 5000 });
		} catch (err) {
			lastError = err;
		}
	}
	throw lastError;
}

async function main([command, countText = "10"]: string[]): Promise<void> {
	const count = Number(countText);
	if ((command !== "list" && command !== "replay") || !Number.isInteger(count) || count < 1) throw new Error(USAGE);
	const config = loadConfig(environment());
	const connection = await connect(config.rabbitUrls);
	try {
		if (command === "list") {
			const letters = await listDeadLetters(connection, config.taskQueue, count);
			if (letters.length === 0) console.log(`${config.taskQueue}.dead is empty`);
			else console.table(letters);
		} else {
			console.log(`${await replayDeadLetters(connection, config.taskQueue, count)} messages moved back to ${config.taskQueue}`);
		}
	} finally {
		await connection.close();
	}
}

main(process.argv.slice(2)).catch((err: Error) => {
	console.error(err.message);
	process.exitCode = 1;
});
