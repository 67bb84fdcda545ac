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
