import amqp, { type ChannelModel } from "amqplib";
import { randomUUID } from "node:crypto";
import { AmqpTaskQueue, type AmqpQueueOptions } from "../../lib/queue/amqp-task-queue";
import { eventually } from "./eventually";
import { SILENT_LOGGER } from "./silent-logger";
import { deadLetterQueueOf } from "../../lib/queue/task-queue";

export const RABBIT_URL = process.env.TEST_RABBIT_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2F";
export const RABBIT_MANAGEMENT_URL = process.env.TEST_RABBIT_MANAGEMENT_URL ?? "http://127.0.0.1:15672";
/** guest on the local stack; the compose test passes its administrator (RabbitMQ's guest is gone there). */
const MANAGEMENT_USER = process.env.TEST_RABBIT_MANAGEMENT_USER ?? "guest";
const MANAGEMENT_PASSWORD = process.env.TEST_RABBIT_MANAGEMENT_PASSWORD ?? "guest";
const MANAGEMENT_AUTH = `Basic ${Buffer.from(`${MANAGEMENT_USER}:${MANAGEMENT_PASSWORD}`).toString("base64")}`;

/** A connection for inspecting queues from the side; fails loudly when RabbitMQ is not running. */
export async function connectOrExplain(): Promise<ChannelModel> {
	try {
		return await amqp.connect(RABBIT_URL);
	} catch (err) {
		throw new Error(`RabbitMQ is not reachable at ${RABBIT_URL} (${(err as Error).message}); start it with \`npm run stack:up\``, { cause: err });
	}
}

export function scratchQueueName(): string {
	return `test.${randomUUID()}`;
}

export function openQueue(queue: string, overrides: Partial<AmqpQueueOptions> = {}): AmqpTaskQueue {
	const taskQueue = new AmqpTaskQueue({
		urls: [RABBIT_URL],
		queue,
		prefetch: 50,
		publishTimeoutMs: 2000,
		maxMessageBytes: 65536,
		connectionName: `test ${queue}`,
		logger: SILENT_LOGGER,
		reconnectDelayMs: () => 100,
		retryDelayMs: () => 20,
		...overrides,
	});
	taskQueue.start();
	return taskQueue;
}

export async function management<T>(path: string, method = "GET"): Promise<T> {
	const res = await fetch(`${RABBIT_MANAGEMENT_URL}/api${path}`, { method, headers: { Authorization: MANAGEMENT_AUTH } });
	if (!res.ok) throw new Error(`RabbitMQ management ${method} ${path}: ${res.status}`);
	return (method === "GET" ? res.json() : undefined) as T;
}

/** Waits until the management API's counters of `queue` satisfy `done` (they lag a few seconds). */
export function queueCounters(queue: string, done: (counters: QueueCounters) => boolean, timeoutMs = 15_000): Promise<QueueCounters> {
	return eventually(
		`queue ${queue}'s counters`,
		async () => {
			const counters = await management<QueueCounters>(`/queues/%2F/${encodeURIComponent(queue)}`);
			return done(counters) ? counters : undefined;
		},
		timeoutMs,
	);
}

interface QueueCounters {
	messages_ready: number;
	messages_unacknowledged: number;
}

/** A queue as the management API shows it; leader, members and online are a quorum queue's Erlang node names. */
export interface QueueInfo extends QueueCounters {
	type: string;
	arguments: Record<string, unknown>;
	leader?: string;
	members?: string[];
	online?: string[];
}

/** A node of the cluster as the management API lists it (GET /api/nodes). */
export interface ClusterNode {
	name: string;
	running: boolean;
}

/**
 * GET /api<path> from the first of a cluster's management ports (on 127.0.0.1) that answers: any
 * node shows the whole cluster, and one of them may be down.
 */
export async function fromAnyNode<T>(managementPorts: string[], path: string): Promise<T> {
	for (const port of managementPorts) {
		const response = await fetch(`http://127.0.0.1:${port}/api${path}`, {
			headers: { Authorization: MANAGEMENT_AUTH },
			signal: AbortSignal.timeout(2000),
		}).catch(() => undefined);
		if (response?.ok) return (await response.json()) as T;
	}
	throw new Error(`no RabbitMQ node's management API answered ${path} (ports ${managementPorts.join(", ")})`);
}

/** `queue` in the default vhost, as the first node that answers sees it. */
export function queueInfo(managementPorts: string[], queue: string): Promise<QueueInfo> {
	return fromAnyNode<QueueInfo>(managementPorts, `/queues/%2F/${encodeURIComponent(queue)}`);
}

/** Messages in the dead-letter queue of `queue`, read over a connection of its own. */
export async function deadLetteredCount(queue: string): Promise<number> {
	const connection = await connectOrExplain();
	try {
		const channel = await connection.createChannel();
		return (await channel.checkQueue(deadLetterQueueOf(queue))).messageCount;
	} finally {
		await connection.close();
	}
}
