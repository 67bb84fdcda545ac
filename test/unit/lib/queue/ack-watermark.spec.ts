import type { ConsumeMessage } from "amqplib";
import { AckWatermark } from "../../../../lib/queue/ack-watermark";

const delivery = (deliveryTag: number) => ({ fields: { deliveryTag } }) as ConsumeMessage;
const afterSettling = () => Promise.resolve();

describe("AckWatermark", () => {
	function watermarkOver(tags: number[]) {
		const acks: { tag: number; allUpTo?: boolean }[] = [];
		const watermark = new AckWatermark({ ack: (message, allUpTo) => void acks.push({ tag: message.fields.deliveryTag, allUpTo }) });
		const messages = tags.map(delivery);
		messages.forEach(message => watermark.received(message));
		return { watermark, messages, acks };
	}

	it("acks a stored batch with one multiple ack on its last delivery", async () => {
		const { watermark, messages, acks } = watermarkOver([1, 2, 3, 4]);
		messages.slice(0, 3).forEach(message => watermark.settle(message));
		await afterSettling();
		expect(acks).toEqual([{ tag: 3, allUpTo: true }]);
		watermark.settle(messages[3]);
		await afterSettling();
		expect(acks).toEqual([
			{ tag: 3, allUpTo: true },
			{ tag: 4, allUpTo: true },
		]);
	});

	it("never acks past a delivery that is not settled yet", async () => {
		const { watermark, messages, acks } = watermarkOver([1, 2, 3, 4]);
		const [beingDeadLettered, ...stored] = messages;
		stored.forEach(message => watermark.settle(message));
		await afterSettling();
		expect(acks).toEqual([]);
		watermark.settle(beingDeadLettered);
		await afterSettling();
		expect(acks).toEqual([{ tag: 4, allUpTo: true }]);
	});

	it("survives a channel that closed before the ack", async () => {
		const watermark = new AckWatermark({
			ack: () => {
				throw new Error("Channel closed");
			},
		});
		const message = delivery(1);
		watermark.received(message);
		watermark.settle(message);
		await expect(afterSettling()).resolves.toBeUndefined();
	});
});
