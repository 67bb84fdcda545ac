import { ServiceBroker } from "moleculer";
import brokerConfig from "../../moleculer.config";

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
