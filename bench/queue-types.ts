import { costDirect, costRatios, type CostRun } from "./cost";
import { leadQueueOn, rabbitSetup, stackEnv, useRabbit, type RabbitSetup } from "../scripts/stack-control";

/**
 * The queue-types phase: the cost phase's run straight to the gateways on a classic task queue on
 * one RabbitMQ node, then on a quorum queue on that node, then on a quorum queue on the cluster
 * of three. The first step is the price of the queue type alone, the second adds the replication
 * to two more nodes. On the cluster it runs twice: with the queue's leader on rq1, where every
 * client connects (the first of RABBIT_HOSTS), as when rq1 declared it; and with the leader on
 * rq2, as after a failover, so that each publish and delivery also crosses from rq1 to rq2.
 */

interface QueueSetup extends RabbitSetup {
	/** The cluster's node that leads the quorum queue during the run. */
	leader?: string;
}

/** Setups compared with one another, each on a stack started anew: the warm-up their figures were measured with. */
const QUEUE_TYPE_WARM_UP_TASKS = 20_000;

const SETUPS: QueueSetup[] = [
	{ nodes: 1, queueType: "classic" },
	{ nodes: 1, queueType: "quorum" },
	{ nodes: 3, queueType: "quorum", leader: "rq1" },
	{ nodes: 3, queueType: "quorum", leader: "rq2" },
];

/** Where the queue's work was done and where its clients were connected, as RabbitMQ saw it after the run. */
interface Layout {
	/** The quorum queue's leader, or the node of the classic queue. */
	queueOn: string;
	clientsOn: string[];
}

export interface QueueTypeRun extends CostRun {
	setup: QueueSetup;
	layout: Layout;
}

export interface QueueTypes {
	runs: QueueTypeRun[];
	/** Each later run's CPU per task and tasks/s over the first's (classic, 1 node), by the run's name. */
	ratiosToClassic: Record<string, Record<string, number>>;
}

function setupName(setup: QueueSetup): string {
	const name = `${setup.queueType}, ${setup.nodes === 1 ? "1 node" : `${setup.nodes} nodes`}`;
	if (!setup.leader) return name;
	return `${name}, leader ${setup.leader === "rq1" ? "on the clients' node" : "on another node"}`;
}

const runsOn = (setup: RabbitSetup) => {
	const current = rabbitSetup();
	return current?.nodes === setup.nodes && current.queueType === setup.queueType;
};

async function layout(queue: string): Promise<Layout> {
	const api = `http://127.0.0.1:${stackEnv().RABBITMQ_MANAGEMENT_PORT}/api`;
	const headers = { Authorization: `Basic ${Buffer.from("guest:guest").toString("base64")}` };
	const get = async <T>(path: string) => (await (await fetch(`${api}${path}`, { headers })).json()) as T;
	const details = await get<{ leader?: string; node: string }>(`/queues/%2F/${encodeURIComponent(queue)}`);
	const connections = await get<{ node: string }[]>("/connections?columns=node");
	return { queueOn: details.leader ?? details.node, clientsOn: [...new Set(connections.map(connection => connection.node))].sort() };
}

/**
 * Measures `tasks` tasks on each setup, restarting the stack for each, and leaves the stack on
 * the setup it found, also when a run fails.
 */
export async function queueTypes(tasks: number, queue: string, db: string, log: (message: string) => void): Promise<QueueTypes> {
	const found = rabbitSetup();
	if (!found) throw new Error("queue types: the stack is not up");
	const runs: QueueTypeRun[] = [];
	try {
		for (const setup of SETUPS) {
			// Every run starts alike, on a stack started anew; the run empties the store itself.
			log(`queue types: starting the stack on ${setupName(setup)}`);
			useRabbit(setup);
			if (setup.leader) leadQueueOn(setup.leader);
			log(`queue types: ${tasks} tasks straight to both gateways, ${setupName(setup)}`);
			const run = await costDirect({ tasks, warmUpTasks: QUEUE_TYPE_WARM_UP_TASKS }, queue, db);
			const where = await layout(queue);
			log(`queue types: the queue ran on ${where.queueOn}, its clients on ${where.clientsOn.join(", ")}`);
			runs.push({ ...run, name: setupName(setup), setup, layout: where });
		}
	} finally {
		if (!runsOn(found)) {
			log(`queue types: restarting the stack on ${setupName(found)}, as it was`);
			useRabbit(found);
		}
	}
	const [classic, ...others] = runs;
	return { runs, ratiosToClassic: Object.fromEntries(others.map(run => [run.name, costRatios(run, classic)])) };
}
