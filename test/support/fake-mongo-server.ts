import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { deserialize, serialize, type Document } from "bson";

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_MSG = 2013;
const HANDSHAKES = new Set(["ismaster", "isMaster", "hello", "ping", "endSessions"]);

/** Answers one command, at once or later; the default answers `{ok: 1}`. */
export type CommandHandler = (command: Document) => Document | undefined | Promise<Document | undefined>;

/**
 * A MongoDB server as far as the wire protocol goes, with no database behind it: it answers the
 * handshake as a MongoDB 6.0 standalone, records every other command exactly as it arrived, and
 * answers it with what the test's handler returns. No mongod runs here, and this is where the
 * store's queries can be asserted byte for byte, whatever the driver version in between.
 */
export class FakeMongoServer {
	readonly commands: Document[] = [];
	private readonly server: Server;
	private readonly sockets = new Set<Socket>();

	constructor(private readonly handle: CommandHandler = () => undefined) {
		this.server = createServer(socket => this.serve(socket));
	}

	async start(): Promise<string> {
		await new Promise<void>(resolve => this.server.listen(0, "127.0.0.1", resolve));
		return `mongodb://127.0.0.1:${(this.server.address() as AddressInfo).port}/`;
	}

	async stop(): Promise<void> {
		for (const socket of this.sockets) socket.destroy();
		await new Promise(resolve => this.server.close(resolve));
	}

	/** The recorded commands of one name, e.g. "find". */
	named(name: string): Document[] {
		return this.commands.filter(command => Object.keys(command)[0] === name);
	}

	private serve(socket: Socket): void {
		this.sockets.add(socket);
		socket.on("close", () => this.sockets.delete(socket));
		socket.on("error", () => socket.destroy());
		let pending = Buffer.alloc(0);
		socket.on("data", (chunk: Buffer) => {
			pending = Buffer.concat([pending, chunk]);
			while (pending.length >= 4 && pending.length >= pending.readInt32LE(0)) {
				const message = pending.subarray(0, pending.readInt32LE(0));
				pending = pending.subarray(message.length);
				void this.reply(message).then(reply => socket.writable && socket.write(reply));
			}
		});
	}

	private async reply(message: Buffer): Promise<Buffer> {
		const requestId = message.readInt32LE(4);
		const opCode = message.readInt32LE(12);
		if (opCode === OP_QUERY) {
			// Legacy handshake: flags, full collection name, skip, return count, then the query.
			const nameEnd = message.indexOf(0, 20);
			const query = deserialize(message.subarray(nameEnd + 9));
			return opReply(requestId, await this.answer(query));
		}
		if (opCode !== OP_MSG) throw new Error(`unexpected opCode ${opCode}`);
		return opMsg(requestId, await this.answer(readOpMsg(message)));
	}

	private async answer(command: Document): Promise<Document> {
		const name = Object.keys(command)[0];
		if (HANDSHAKES.has(name)) {
			return {
				ismaster: true,
				helloOk: true,
				maxBsonObjectSize: 16 * 1024 * 1024,
				maxMessageSizeBytes: 48_000_000,
				maxWriteBatchSize: 100_000,
				localTime: new Date(),
				minWireVersion: 0,
				maxWireVersion: 17,
				ok: 1,
			};
		}
		this.commands.push(command);
		return (await this.handle(command)) ?? { ok: 1 };
	}
}

/** The command of an OP_MSG: its body section, with any document-sequence sections folded in. */
function readOpMsg(message: Buffer): Document {
	let offset = 20;
	let body: Document = {};
	const sequences: Record<string, Document[]> = {};
	while (offset < message.length) {
		const kind = message.readUInt8(offset++);
		const size = message.readInt32LE(offset);
		if (kind === 0) {
			body = deserialize(message.subarray(offset, offset + size));
		} else {
			const nameEnd = message.indexOf(0, offset + 4);
			const identifier = message.toString("utf8", offset + 4, nameEnd);
			const documents: Document[] = [];
			for (let at = nameEnd + 1; at < offset + size; at += message.readInt32LE(at)) {
				documents.push(deserialize(message.subarray(at, at + message.readInt32LE(at))));
			}
			sequences[identifier] = documents;
		}
		offset += size;
	}
	return { ...body, ...sequences };
}

function header(length: number, responseTo: number, opCode: number): Buffer {
	const buffer = Buffer.alloc(16);
	buffer.writeInt32LE(length, 0);
	buffer.writeInt32LE(0, 4);
	buffer.writeInt32LE(responseTo, 8);
	buffer.writeInt32LE(opCode, 12);
	return buffer;
}

function opMsg(responseTo: number, document: Document): Buffer {
	const body = Buffer.from(serialize(document));
	const flagsAndKind = Buffer.from([0, 0, 0, 0, 0]);
	return Buffer.concat([header(16 + flagsAndKind.length + body.length, responseTo, OP_MSG), flagsAndKind, body]);
}

function opReply(responseTo: number, document: Document): Buffer {
	const body = Buffer.from(serialize(document));
	const fields = Buffer.alloc(20);
	fields.writeInt32LE(1, 16);
	return Buffer.concat([header(16 + fields.length + body.length, responseTo, OP_REPLY), fields, body]);
}
