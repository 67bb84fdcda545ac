import { ServiceBroker } from "moleculer";
import brokerConfig from "../../moleculer.config";

/**
 * moleculer.config.ts lists Moleculer's internal middlewares itself, to leave out the metrics of
 * local calls: every other one must still work, and calls between nodes are still counted.
 */
describe("the nodes' middlewares", () => {
	const nodes: ServiceBroker[] = [];
	const node = (nodeID: string) => {
		const broker = new ServiceBroker({ ...brokerConfig, nodeID, transporter: "Fake", logger: false, metrics: { enabled: true }, replOptions: undefined });
		nodes.push(broker);
		return broker;
	};
	afterAll(() => Promise.all(nodes.map(broker => broker.stop())));

	it("validate params, count calls from other nodes, and leave local calls uncounted", async () => {
		const callee = node("callee");
		callee.createService({ name: "echo", actions: { say: { params: { word: "string" }, handler: ctx => ctx.params.word } } });
		const caller = node("caller");
		await Promise.all([callee.start(), caller.start()]);
		await caller.waitForServices("echo");

		await expect(callee.call("echo.say", { word: 1 })).rejects.toMatchObject({ name: "ValidationError" });
		await expect(callee.call("echo.say", { word: "local" })).resolves.toBe("local");
		await expect(caller.call("echo.say", { word: "remote" })).resolves.toBe("remote");

		const counted = (broker: ServiceBroker) => broker.metrics.getMetric("moleculer.request.total")?.snapshot() ?? [];
		expect(counted(callee)).toEqual([]);
		expect(counted(caller)).toEqual([expect.objectContaining({ labels: expect.objectContaining({ action: "echo.say", type: "remote" }), value: 1 })]);
	});
});

/**
 * Leaving the REPL with `quit` while its input ends (Ctrl+D, or piped commands running out)
 * stops the broker twice at once. Each node's broker (moleculer.config.ts `created`) shares its
 * first stop with every later caller, so the transporter disconnects once: a second disconnect
 * on the channel the first is closing made amqplib print "Channel ended" with a stack trace.
 */
describe("stopping a node's broker", () => {
	it("disconnects the transporter once, however many callers stop it", async () => {
		const broker = new ServiceBroker({ ...brokerConfig, nodeID: "stop-once", transporter: "Fake", logger: false, metrics: false, replOptions: undefined });
		await broker.start();
		const disconnect = jest.spyOn(broker.transit!, "disconnect");
		const first = broker.stop();
		const second = broker.stop();
		expect(second).toBe(first);
		await Promise.all([first, second]);
		expect(disconnect).toHaveBeenCalledTimes(1);
	});
});
