import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import amqp from "amqplib";
import { MongoClient } from "mongodb";

/**
 * What a bench ran on, written beside its figures: ratios travel between machines, raw figures
 * do not, and a reader of docs/performance.md must know which machine they came from.
 */
export interface Machine {
	cpu: string;
	cores: number;
	memoryGb: number;
	os: string;
	kernel: string;
	node: string;
	go: string | null;
	rabbitmq: string | null;
	store: string | null;
	commit: string | null;
	/** The 1-minute load average when the run started: other work on the machine skews its figures. */
	loadAverage: number;
}

/** The output of a command, or null when it cannot run here. */
function commandOutput(command: string, args: string[]): string | null {
	try {
		return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
	} catch {
		return null;
	}
}

function cpuModel(): string {
	const line = readFileSync("/proc/cpuinfo", "utf8")
		.split("\n")
		.find(entry => entry.startsWith("model name"));
	return line?.split(":")[1]?.trim() ?? os.cpus()[0]?.model ?? "unknown";
}

function osName(): string {
	try {
		return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? os.type();
	} catch {
		return os.type();
	}
}

async function rabbitmqVersion(url: string): Promise<string | null> {
	try {
		const connection = await amqp.connect(url);
		const version = connection.connection.serverProperties.version ?? null;
		await connection.close();
		return version;
	} catch {
		return null;
	}
}

async function storeVersion(uri: string): Promise<string | null> {
	const client = new MongoClient(uri, { serverSelectionTimeoutMS: 2000 });
	try {
		const info = await client.db("admin").command({ buildInfo: 1 });
		if (!info.ferretdbVersion) return `MongoDB ${info.version}`;
		// The stack's FerretDB embeds the library, which knows no release version: its go.mod does.
		return `FerretDB ${info.ferretdbVersion === "unknown" ? ferretdbModuleVersion() : info.ferretdbVersion}`;
	} catch {
		return null;
	} finally {
		await client.close();
	}
}

function ferretdbModuleVersion(): string {
	try {
		const goMod = readFileSync(path.join(__dirname, "../tools/ferretdb/go.mod"), "utf8");
		return /github\.com\/FerretDB\/FerretDB v(\S+)/.exec(goMod)?.[1] ?? "unknown";
	} catch {
		return "unknown";
	}
}

/** This machine, and the servers the stack runs on it. */
export async function describeMachine(rabbitUrl: string, mongoUri: string): Promise<Machine> {
	const goVersion = commandOutput("go", ["env", "GOVERSION"]);
	return {
		cpu: cpuModel(),
		cores: os.availableParallelism(),
		memoryGb: Math.round(os.totalmem() / 2 ** 30),
		os: osName(),
		kernel: os.release(),
		node: process.version,
		go: goVersion,
		rabbitmq: await rabbitmqVersion(rabbitUrl),
		store: await storeVersion(mongoUri),
		commit: commandOutput("git", ["describe", "--always", "--dirty", "--abbrev=12"]),
		loadAverage: Math.round(os.loadavg()[0] * 100) / 100,
	};
}
