import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { ROOT } from "../../scripts/stack-control";

/**
 * Readers of the deployment files (docker-compose.yml, .env, Dockerfile, the Nginx template),
 * shared by the tests that check them without Docker.
 */

/** How the image runs a node (Dockerfile CMD, and the command compose services keep). */
export const RUNNER_COMMAND = ["node", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js"];

export function readText(relativePath: string): string {
	return readFileSync(path.join(ROOT, relativePath), "utf8");
}

/** .env as compose reads it; only plain KEY=VALUE lines, so that no other reader can differ. */
export function parseEnvFile(text: string): Record<string, string> {
	const vars: Record<string, string> = {};
	text.split("\n").forEach((line, index) => {
		if (line.trim() === "" || line.startsWith("#")) return;
		const match = /^([A-Z][A-Z0-9_]*)=([^\s"'`$#]*)$/.exec(line);
		if (!match) throw new Error(`.env line ${index + 1} is not a plain KEY=VALUE: ${line}`);
		if (match[1] in vars) throw new Error(`.env defines ${match[1]} twice`);
		vars[match[1]] = match[2];
	});
	return vars;
}

export function loadDotEnv(): Record<string, string> {
	return parseEnvFile(readText(".env"));
}

/**
 * Compose's interpolation of ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error} and $$.
 * An unset variable without a default throws: compose would only warn and substitute "".
 */
export function interpolate(value: string, vars: Record<string, string>): string {
	return value.replace(
		/\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|[A-Za-z_{])/g,
		(token, _next, name?: string, operator?: string, operand = "") => {
			if (token === "$$") return "$";
			if (name === undefined) throw new Error(`Unsupported interpolation "${token}" in "${value}": use \${NAME}`);
			const current = vars[name];
			const isSet = operator?.startsWith(":") ? Boolean(current) : current !== undefined;
			if (isSet) return current;
			if (operator?.endsWith("-")) return operand;
			throw new Error(`${name} is not set (needed by "${value}")${operand ? `: ${operand}` : ""}`);
		},
	);
}

function interpolateAll(node: unknown, vars: Record<string, string>): unknown {
	if (typeof node === "string") return interpolate(node, vars);
	if (Array.isArray(node)) return node.map(item => interpolateAll(item, vars));
	if (node && typeof node === "object") {
		return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, interpolateAll(value, vars)]));
	}
	return node;
}

export interface HealthCheck {
	test: string[];
	interval?: string;
	timeout?: string;
	retries?: number;
	start_period?: string;
}

export interface ComposeService {
	image?: string;
	extends?: { file?: string; service: string };
	user?: string;
	entrypoint?: string[];
	networks?: string[];
	secrets?: string[];
	tmpfs?: string[];
	read_only?: boolean;
	cap_drop?: string[];
	cap_add?: string[];
	security_opt?: string[];
	deploy?: { resources?: { limits?: { memory?: string; pids?: number } } };
	build?: string | { context: string };
	env_file?: string | string[];
	environment?: Record<string, string | number | boolean | null>;
	ports?: string[];
	volumes?: string[];
	healthcheck?: HealthCheck;
	depends_on?: Record<string, { condition: string }>;
	profiles?: string[];
	restart?: string;
	stop_grace_period?: string;
	command?: string[];
	container_name?: string;
	hostname?: string;
	stdin_open?: boolean;
	tty?: boolean;
}

export interface ComposeFile {
	version?: string;
	services: Record<string, ComposeService>;
	volumes?: Record<string, unknown>;
	networks?: Record<string, { internal?: boolean } | null>;
	secrets?: Record<string, { file: string }>;
}

/** docker-compose.yml (or an overlay) with YAML merge keys applied and ${...} filled from .env, as compose does. */
export function loadCompose(dotEnv = loadDotEnv(), file = "docker-compose.yml"): ComposeFile {
	const raw = parse(readText(file), { merge: true }) as ComposeFile;
	return interpolateAll(raw, dotEnv) as ComposeFile;
}

/** A service's environment with every value as the string the container sees. */
/** A service of the compose file, or a clear failure when it has none of that name. */
export function composeService(compose: ComposeFile, name: string): ComposeService {
	const found = compose.services[name];
	if (!found) throw new Error(`docker-compose.yml has no service "${name}"`);
	return found;
}

export function environmentOf(service: ComposeService): Record<string, string> {
	return Object.fromEntries(Object.entries(service.environment ?? {}).map(([key, value]) => [key, value === null ? "" : String(value)]));
}

/** Host ports a service publishes, from the short syntax "[ip:]host:container[/proto]". */
export function publishedPorts(service: ComposeService): { host: number; container: number }[] {
	return (service.ports ?? []).map(spec => {
		const match = /^(?:[\d.]+:)?(\d+):(\d+)(?:\/\w+)?$/.exec(String(spec));
		if (!match) throw new Error(`Unsupported port syntax "${spec}": use "host:container"`);
		return { host: Number(match[1]), container: Number(match[2]) };
	});
}

/** Seconds of a compose duration such as "30s" or "1m30s". */
export function durationSeconds(duration: string): number {
	const parts = [...duration.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)];
	if (parts.map(part => part[0]).join("") !== duration) throw new Error(`Unsupported duration "${duration}"`);
	const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 };
	return parts.reduce((sum, part) => sum + Number(part[1]) * unit[part[2]], 0);
}

/** Names lib/config.ts reads from the environment: literals passed as `(env, "NAME"` or read as env.NAME. */
export function configEnvNames(): string[] {
	const source = readText("lib/config.ts");
	const names = new Set<string>();
	for (const match of source.matchAll(/\(\s*env\s*,\s*["'`]([A-Z][A-Z0-9_]*)["'`]/g)) names.add(match[1]);
	for (const match of source.matchAll(/\benv(?:\.|\[\s*["'`])([A-Z][A-Z0-9_]*)/g)) names.add(match[1]);
	return [...names].sort();
}

export interface DockerInstruction {
	/** Index of the build stage (the FROM it follows), from 0. */
	stage: number;
	keyword: string;
	args: string;
}

/** Dockerfile instructions with continuation lines joined and comments dropped. */
export function parseDockerfile(text: string): DockerInstruction[] {
	const logical = text
		.split("\n")
		.filter(line => !/^\s*#/.test(line))
		.join("\n")
		.replace(/\\\n/g, " ")
		.split("\n")
		.map(line => line.trim())
		.filter(Boolean);
	let stage = -1;
	return logical.map(line => {
		const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line) as RegExpExecArray;
		if (keyword.toUpperCase() === "FROM") stage++;
		return { stage, keyword: keyword.toUpperCase(), args: args.replace(/\s+/g, " ") };
	});
}
