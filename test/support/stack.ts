import { readFileSync } from "node:fs";
import path from "node:path";
import { parseEnv } from "node:util";
import type { MongoClient } from "mongodb";
import { ServiceBroker } from "moleculer";
import { KEY_CLAIMS_COLLECTION } from "../../lib/store/key-claims";
import { ROOT, stackCommand, stackNodes } from "../../scripts/stack-control";
import { eventually } from "./eventually";

/**
 * The running local stack (`npm run stack:up`), as .stack/stack.env describes it, or another
 * stack described by the file that STACK_ENV names (`npm run test:compose` writes
 * .compose/stack.env for the docker-compose stack). The e2e specs talk to it through Nginx only,
 * plus FerretDB and RabbitMQ where they check what was stored.
 */
export interface Stack {
	env: Record<string, string>;
	/** Nginx, e.g. http://127.0.0.1:8080 */
	baseUrl: string;
	/** A gateway through Nginx, e.g. http://127.0.0.1:8080/flask */
	gatewayUrl(gateway: "flask" | "go"): string;
	rabbitUrl: string;
	mongoUri: string;
	dbName: string;
	taskQueue: string;
	namespace: string;
	/** Node ids of every cluster node: api-flask-1, worker-py-1, ... */
	nodes: string[];
	/** The role (api-flask, worker-py, ...) a node id runs, or undefined for an unknown node. */
	roleOf(nodeId: string): string | undefined;
}

const ENV_FILE = process.env.STACK_ENV ? path.resolve(process.env.STACK_ENV) : path.join(ROOT, ".stack/stack.env");
const NOT_RUNNING = process.env.STACK_ENV
	? `The e2e tests need the stack that ${process.env.STACK_ENV} describes (STACK_ENV).`
	: "The e2e tests need the local stack: start it with `npm run stack:up`.";

/**
 * Roles by node id: STACK_NODE_ROLES ("id=role,...") where node ids do not name their role, as
 * in compose (<container>-<pid>); otherwise the local stack's ids, <role>-<n>.
 */
function nodeRoles(env: Record<string, string>): (nodeId: string) => string | undefined {
	const nodes = env.STACK_NODES.split(",");
	const roles = new Map(
		env.STACK_NODE_ROLES
			? env.STACK_NODE_ROLES.split(",").map(pair => pair.split("=") as [string, string])
			: nodes.map(node => [node, node.replace(/-\d+$/, "")]),
	);
	return nodeId => roles.get(nodeId);
}

/** Reads the stack's env file (.stack/stack.env unless STACK_ENV names another) and checks that both gateways answer ready through Nginx; throws otherwise. */
export async function connectToStack(): Promise<Stack> {
	let text: string;
	try {
		text = readFileSync(ENV_FILE, "utf8");
	} catch {
		throw new Error(`${ENV_FILE} does not exist. ${NOT_RUNNING}`);
	}
	const env = parseEnv(text) as Record<string, string>;
	const stack: Stack = {
		env,
		baseUrl: `http://127.0.0.1:${env.NGINX_PORT}`,
		gatewayUrl: gateway => `http://127.0.0.1:${env.NGINX_PORT}/${gateway}`,
		rabbitUrl: `amqp://guest:guest@${env.RABBIT_HOST}:${env.RABBIT_PORT}`,
		mongoUri: env.MONGO_URI,
		dbName: env.DB_NAME,
		taskQueue: env.RABBIT_QUEUE,
		namespace: env.NAMESPACE,
		nodes: env.STACK_NODES.split(","),
		roleOf: nodeRoles(env),
	};
	for (const gateway of ["flask", "go"]) {
		const url = `${stack.baseUrl}/${gateway}/health/ready`;
		const response = await fetch(url, { signal: AbortSignal.timeout(5000) }).catch((err: Error & { cause?: { code?: string } }) => {
			throw new Error(`${url} is not reachable (${err.cause?.code ?? err.message}). ${NOT_RUNNING}`);
		});
		if (!response.ok) throw new Error(`${url} answered ${response.status}: ${await response.text()}. ${NOT_RUNNING}`);
	}
	return stack;
}

/** Waits until both gateways answer ready through Nginx (their queue connection included). */
export function gatewaysReady(timeoutMs = 60_000): Promise<Stack> {
	return eventually("both gateways ready", () => connectToStack().catch(() => undefined), timeoutMs);
}

/** Brings back whatever a fault left down (`up` starts only what is missing), then waits for the gateways. */
export async function leaveStackHealthy(): Promise<Stack> {
	const allUp = await stackCommand("status").then(
		() => true,
		() => false,
	);
	if (!allUp) await stackCommand("up");
	return gatewaysReady();
}

/** Runs `work` on every item with at most `limit` running at once. */
export async function inParallel<T, R>(items: T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
	const results: R[] = new Array(items.length);
	let next = 0;
	const lane = async () => {
		while (next < items.length) {
			const index = next++;
			results[index] = await work(items[index], index);
		}
	};
	await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
	return results;
}

/**
 * A Moleculer node of the test's own on the stack's bus (its namespace, over RabbitMQ), started:
 * to read the cluster's registry or call its actions as any node could. Its node id is
 * `<name>-<pid>`; the caller stops it.
 */
export async function joinBus(stack: Stack, name: string): Promise<ServiceBroker> {
	const broker = new ServiceBroker({
		namespace: stack.namespace,
		nodeID: `${name}-${process.pid}`,
		transporter: { type: "AMQP", options: { url: stack.rabbitUrl } },
		logger: false,
	});
	try {
		await broker.start();
	} catch (err) {
		await broker.stop();
		throw err;
	}
	return broker;
}

/** A tag that keeps this run's tasks apart from the ones earlier runs left in the store. */
export const runTag = () => `e2e-${Date.now().toString(36)}-${process.pid}`;

/**
 * Deletes the tasks a test run stored (titles matching `titlePattern`) from the stack's store, and
 * the Idempotency-Key claims it made, and closes the client.
 */
export async function removeTestTasks(mongo: MongoClient | undefined, stack: Stack, titlePattern: string): Promise<void> {
	const db = mongo?.db(stack.dbName);
	for (const collection of ["tasks", KEY_CLAIMS_COLLECTION]) await db?.collection(collection).deleteMany({ title: { $regex: titlePattern } });
	await mongo?.close();
}

/** The pid of a running local-stack node (api-flask-1, worker-py-1, ...), as process-compose reports it. */
export async function nodePid(node: string): Promise<number | undefined> {
	return (await stackNodes()).find(candidate => candidate.id === node)?.pid;
}
