import { isRunning, processes } from "../../scripts/process-compose-client";
import { connectToStack, type Stack } from "../support/stack";
import { commandOf, listeningSockets, socketOwners, withDescendants } from "../support/listening-sockets";

/**
 * What the running local stack listens on, as the kernel reports it: only Nginx's port may take
 * connections from another host; RabbitMQ (AMQP, management, Erlang distribution, epmd),
 * FerretDB, Prometheus, the gateways and every node's metrics answer on loopback only.
 */

const EPMD_PORT = 4369;

describe("the local stack's listening sockets", () => {
	let stack: Stack;

	beforeAll(async () => {
		stack = await connectToStack();
	});

	it("are on loopback, but for Nginx's port", async () => {
		const sockets = listeningSockets();
		const owners = socketOwners();
		const ownerOf = (port: number) => sockets.filter(socket => socket.port === port).map(socket => owners.get(socket.inode) as number);
		// The stack's processes: those process-compose runs (nodes, Nginx, FerretDB, Prometheus,
		// RabbitMQ) with their children, and RabbitMQ's node and epmd, found by their well-known
		// ports (epmd detaches from the node that starts it).
		const recorded = (await processes()).filter(isRunning).map(process => process.pid);
		const stackPids = withDescendants([...recorded, ...ownerOf(Number(stack.env.RABBIT_PORT)), ...ownerOf(EPMD_PORT)]);
		const ours = sockets
			.map(socket => ({ ...socket, pid: owners.get(socket.inode) as number }))
			.filter(socket => stackPids.has(socket.pid))
			.map(socket => ({ ...socket, command: commandOf(socket.pid) }));

		// Every port the stack serves is among them, so that the check below is not vacuous.
		const metricsPorts = stack.env.STACK_METRICS.split(",").map(entry => Number(entry.split(":").pop()));
		const expected = [
			stack.env.NGINX_PORT,
			stack.env.FLASK_PORT,
			stack.env.GO_PORT,
			stack.env.RABBIT_PORT,
			stack.env.RABBITMQ_MANAGEMENT_PORT,
			EPMD_PORT,
			new URL(stack.mongoUri).port,
			stack.env.PROMETHEUS_PORT,
			...metricsPorts,
		].map(Number);
		expect(expected.filter(port => !ours.some(socket => socket.port === port))).toEqual([]);
		// RabbitMQ's Erlang distribution listens beside AMQP and the management UI.
		expect(ours.filter(socket => socket.command === "beam.smp").length).toBeGreaterThanOrEqual(3);

		const reachable = ours.filter(socket => !socket.loopback).map(socket => `${socket.command} on ${socket.address}:${socket.port}`);
		expect(reachable).toEqual([`nginx on 0.0.0.0:${stack.env.NGINX_PORT}`]);
	});
});
