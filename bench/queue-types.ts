import { costDirect, costRatios, dropStore, type CostRun } from "./cost";
import { rabbitSetup, useRabbit, type RabbitSetup } from "../scripts/stack-control";

/**
 * The queue-types phase: the cost phase's run straight to the gateways on a classic task queue on
 * one RabbitMQ node, then on a quorum queue on that node, then on a quorum queue on the cluster
 * of three. The first step is the price of the queue type alone, the second adds the replication
 * to two more nodes.
 */

const SETUPS: RabbitSetup[] = [
	{ nodes: 1, queueType: "classic" },
	{ nodes: 1, queueType: "quorum" },
	{ nodes: 3, queueType: "quorum" },
];

export interface QueueTypeRun extends CostRun {
	setup: RabbitSetup;
}

export interface QueueTypes {
	runs: QueueTypeRun[];
	/** Each later run's CPU per task and tasks/s over the first's (classic, 1 node), by the run's name. */
	ratiosToClassic: Record<string, Record<string, number>>;
}

const setupName = (setup: RabbitSetup) => `${setup.queueType}, ${setup.nodes === 1 ? "1 node" : `${setup.nodes} nodes`}`;

const runsOn = (setup: RabbitSetup) => {
	const current = rabbitSetup();
	return current?.nodes === setup.nodes && current.queueType === setup.queueType;
};

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
			// Every run starts alike, on a stack started anew and an empty store: the store's inserts
			// cost more as the collection grows, and the nodes create its indexes again at their start.
			await dropStore(db);
			log(`queue types: starting the stack on ${setupName(setup)}`);
			useRabbit(setup);
			log(`queue types: ${tasks} tasks straight to both gateways, ${setupName(setup)}`);
			runs.push({ ...(await costDirect(tasks, queue, db)), name: setupName(setup), setup });
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
