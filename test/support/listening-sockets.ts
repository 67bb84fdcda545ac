import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** A TCP socket in LISTEN state, as the kernel lists it in /proc/net/tcp and /proc/net/tcp6. */
export interface ListeningSocket {
	address: string;
	port: number;
	loopback: boolean;
	inode: number;
}

const LISTEN = "0A";

/** The kernel writes each 32-bit word of an address in host (little-endian) byte order. */
function addressBytes(hex: string): number[] {
	const bytes: number[] = [];
	for (let word = 0; word < hex.length; word += 8) {
		for (let byte = 6; byte >= 0; byte -= 2) bytes.push(parseInt(hex.slice(word + byte, word + byte + 2), 16));
	}
	return bytes;
}

function describe(bytes: number[]): { address: string; loopback: boolean } {
	if (bytes.length === 4) return { address: bytes.join("."), loopback: bytes[0] === 127 };
	const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] << 8) | bytes[2 * i + 1]).toString(16));
	const mappedV4 = bytes.slice(0, 10).every(b => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
	const v6Loopback = bytes.slice(0, 15).every(b => b === 0) && bytes[15] === 1;
	return { address: groups.join(":"), loopback: v6Loopback || (mappedV4 && bytes[12] === 127) };
}

/** Every listening TCP socket of this network namespace, IPv4 and IPv6. */
export function listeningSockets(): ListeningSocket[] {
	return ["/proc/net/tcp", "/proc/net/tcp6"].flatMap(file =>
		readFileSync(file, "utf8")
			.trim()
			.split("\n")
			.slice(1)
			.map(line => line.trim().split(/\s+/))
			.filter(fields => fields[3] === LISTEN)
			.map(fields => {
				const [hexAddress, hexPort] = fields[1].split(":");
				return { ...describe(addressBytes(hexAddress)), port: parseInt(hexPort, 16), inode: Number(fields[9]) };
			}),
	);
}

function pids(): number[] {
	return readdirSync("/proc")
		.filter(name => /^\d+$/.test(name))
		.map(Number);
}

/** The process holding each socket inode (read from every process's fds: needs root for other users' processes). */
export function socketOwners(): Map<number, number> {
	const owners = new Map<number, number>();
	for (const pid of pids()) {
		let fds: string[];
		try {
			fds = readdirSync(`/proc/${pid}/fd`);
		} catch {
			continue; // gone, or not ours to read
		}
		for (const fd of fds) {
			try {
				const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
				if (inode) owners.set(Number(inode), pid);
			} catch {
				// closed meanwhile
			}
		}
	}
	return owners;
}

/** The processes and every process below them. */
export function withDescendants(roots: number[]): Set<number> {
	const children = new Map<number, number[]>();
	for (const pid of pids()) {
		try {
			// The parent is the 2nd field after the parenthesised command, which may hold spaces.
			const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
			const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
			children.set(parent, [...(children.get(parent) ?? []), pid]);
		} catch {
			// gone meanwhile
		}
	}
	const found = new Set<number>();
	const pending = [...roots];
	for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
		if (found.has(pid)) continue;
		found.add(pid);
		pending.push(...(children.get(pid) ?? []));
	}
	return found;
}

/** The command name of a process (/proc/<pid>/comm). */
export function commandOf(pid: number): string {
	try {
		return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
	} catch {
		return "?";
	}
}
