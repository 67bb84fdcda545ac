import { fork, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import amqp from "amqplib";
import { MongoClient } from "mongodb";
import { renderNginxTemplate } from "../scripts/nginx-template";
import { postTasks, type LoadFigures } from "./load";
import { STACK } from "../scripts/stack-control";

const BARE_PORT = 5101;
const CEILING_NGINX_PORT = 8081;

/**
 * The HTTP ceiling: the same Nginx config and worker count as the stack's, in front of a bare
 * Node server that answers 202, loaded exactly as the ingest figure is.
 */
export async function nginxToBareNode(load: { connections: number; durationSeconds: number }): Promise<LoadFigures> {
	const dir = path.join(STACK, "bench-nginx");
	mkdirSync(path.join(dir, "temp"), { recursive: true });
	writeFileSync(
		path.join(dir, "default.conf"),
		renderNginxTemplate({
			NGINX_PORT: String(CEILING_NGINX_PORT),
			FLASK_UPSTREAM: `127.0.0.1:${BARE_PORT}`,
			GO_UPSTREAM: `127.0.0.1:${BARE_PORT}`,
			RABBITMQ_MANAGEMENT_UPSTREAM: "127.0.0.1:15672",
			NGINX_RESOLVER: "127.0.0.1",
			UPSTREAM_RESOLVE: "",
			MAX_BODY_BYTES: "16384",
		}),
	);
	// The stack's own main config, moved to this folder, so both Nginx instances match.
	const stackNginx = path.join(STACK, "nginx");
	const mainConfig = readFileSync(path.join(stackNginx, "nginx.conf"), "utf8")
		.replaceAll(stackNginx, dir)
		.replace(/error_log \S+/, `error_log ${dir}/error.log`);
	writeFileSync(path.join(dir, "nginx.conf"), mainConfig);

	const bare = fork(path.join(__dirname, "bare-server.ts"), [String(BARE_PORT)], { execArgv: ["--import", "tsx"] });
	await new Promise(resolve => bare.once("message", resolve));
	const nginx = spawn("/usr/sbin/nginx", ["-c", path.join(dir, "nginx.conf"), "-g", "daemon off;"], { stdio: "inherit" });
	try {
		await waitForPort(CEILING_NGINX_PORT);
		return await postTasks(`http://127.0.0.1:${CEILING_NGINX_PORT}/flask/tasks`, load);
	} finally {
		await stop(nginx, "SIGQUIT");
		await stop(bare, "SIGTERM");
	}
}

/** The publish ceiling: raw amqplib, persistent messages, confirms pipelined in a window. */
export async function amqpPublish(url: string, messages: number, window = 1000): Promise<{ messagesPerSecond: number }> {
	const connection = await amqp.connect(url);
	const channel = await connection.createConfirmChannel();
	const queue = `bench.ceiling.${randomUUID()}`;
	await channel.assertQueue(queue, { durable: true });
	const body = Buffer.from(JSON.stringify({ id: randomUUID(), title: "benchmark task", source: "flask", created_at: new Date().toISOString() }));
	const started = performance.now();
	let inFlight = 0;
	let wake: (() => void) | null = null;
	for (let sent = 0; sent < messages; sent++) {
		while (inFlight >= window) await new Promise<void>(resolve => (wake = resolve));
		inFlight++;
		channel.publish("", queue, body, { persistent: true, contentType: "application/json" }, () => {
			inFlight--;
			wake?.();
		});
	}
	await channel.waitForConfirms();
	const seconds = (performance.now() - started) / 1000;
	await channel.deleteQueue(queue);
	await connection.close();
	return { messagesPerSecond: Math.round(messages / seconds) };
}

/** The store ceiling: unordered inserts of worker-sized batches, as the workers write. */
export async function storeInsert(mongoUri: string, documents: number, batch = 200): Promise<{ documentsPerSecond: number }> {
	const client = await MongoClient.connect(mongoUri);
	const db = client.db(`bench_ceiling_${randomUUID().slice(0, 8)}`);
	const collection = db.collection<{ _id: string }>("tasks");
	const started = performance.now();
	for (let done = 0; done < documents; done += batch) {
		const now = new Date();
		await collection.insertMany(
			Array.from({ length: batch }, () => ({
				_id: randomUUID(),
				title: "benchmark task",
				source: "flask",
				created_at: now,
				status: "processed",
				processed_by: "worker-py",
				processed_at: now,
				node_id: "bench",
			})),
			{ ordered: false, writeConcern: { w: "majority", j: true } },
		);
	}
	const seconds = (performance.now() - started) / 1000;
	await db.dropDatabase();
	await client.close();
	return { documentsPerSecond: Math.round(documents / seconds) };
}

async function waitForPort(port: number): Promise<void> {
	for (let attempt = 0; attempt < 100; attempt++) {
		const open = await new Promise<boolean>(resolve => {
			const socket = net.connect(port, "127.0.0.1", () => resolve(true)).on("error", () => resolve(false));
			socket.unref();
			setTimeout(() => socket.destroy(), 200);
		});
		if (open) return;
		await sleep(50);
	}
	throw new Error(`nothing listens on port ${port}`);
}

function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
	if (child.exitCode !== null) return Promise.resolve();
	return new Promise(resolve => {
		child.once("exit", () => resolve());
		child.kill(signal);
	});
}
