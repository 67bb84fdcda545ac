import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./stack-control";

/**
 * Fresh random secrets for a docker-compose (or swarm) deployment, one file each in SECRETS_DIR
 * (default .secrets/, git-ignored), as docker-compose.yml's `secrets:` reads them:
 *   npm run secrets                              # writes the missing ones, keeps the others
 *   npm run secrets -- --rotate mongo_password   # a new value; the old one in <name>.previous
 *   npm run secrets -- --rotate all
 * then `docker compose up -d --force-recreate` (docs/security-secrets.md: "Rotating a secret").
 */

/** Every secret of the deployment, and what it is for. */
export const SECRETS = {
	rabbit_password: "RabbitMQ password of the cluster's application user (RABBIT_USER)",
	rabbit_admin_password: "RabbitMQ password of the administrator (RABBIT_ADMIN_USER), for the management UI",
	rabbit_erlang_cookie: "Erlang cookie of the RabbitMQ nodes and their CLI tools",
	mongo_password: "MongoDB password of the cluster's application user (MONGO_USER)",
	mongo_admin_password: "MongoDB password of the administrator (MONGO_ADMIN_USER)",
} as const;

export type SecretName = keyof typeof SECRETS;
export const SECRET_NAMES = Object.keys(SECRETS) as SecretName[];

/** The secret whose value before the last rotation must stay readable: mongo-users logs in with it once. */
export const KEEPS_PREVIOUS: SecretName = "mongo_admin_password";

/** URL- and shell-safe characters only, so a value can go into a URI or a config file unquoted. */
export function freshSecret(name: SecretName): string {
	// An Erlang cookie is read as an atom: letters only, as RabbitMQ generates them.
	if (name === "rabbit_erlang_cookie") {
		return Array.from(randomBytes(32), byte => String.fromCharCode(65 + (byte % 26))).join("");
	}
	return randomBytes(24).toString("base64url");
}

/**
 * World-readable files in a directory only the owner can enter: compose bind-mounts each file into
 * containers that run as other users (node, rabbitmq, mongodb), which must read it.
 */
function write(file: string, value: string): void {
	writeFileSync(`${file}.tmp`, `${value}\n`, { mode: 0o644 });
	chmodSync(`${file}.tmp`, 0o644);
	renameSync(`${file}.tmp`, file);
}

export function writeSecrets(dir: string, rotate: readonly SecretName[], log: (line: string) => void): void {
	mkdirSync(dir, { recursive: true, mode: 0o700 });
	chmodSync(dir, 0o700);
	for (const name of SECRET_NAMES) {
		const file = path.join(dir, name);
		const exists = existsSync(file);
		if (exists && !rotate.includes(name)) {
			log(`kept    ${name}`);
		} else {
			if (exists) write(`${file}.previous`, readFileSync(file, "utf8").trimEnd());
			write(file, freshSecret(name));
			log(`${exists ? "rotated" : "wrote  "} ${name}: ${SECRETS[name]}`);
		}
		// The previous value exists from the start, so that compose can always mount it.
		if (name === KEEPS_PREVIOUS && !existsSync(`${file}.previous`)) write(`${file}.previous`, readFileSync(file, "utf8").trimEnd());
	}
}

function parseArgs(args: string[]): SecretName[] {
	const rotate: SecretName[] = [];
	for (let index = 0; index < args.length; index++) {
		if (args[index] !== "--rotate" || index + 1 >= args.length) throw new Error(`usage: npm run secrets [-- --rotate <${SECRET_NAMES.join("|")}|all>]...`);
		const name = args[++index];
		if (name === "all") rotate.push(...SECRET_NAMES);
		else if ((SECRET_NAMES as string[]).includes(name)) rotate.push(name as SecretName);
		else throw new Error(`unknown secret "${name}": one of ${SECRET_NAMES.join(", ")}, or all`);
	}
	return rotate;
}

if (require.main === module) {
	try {
		const dir = path.resolve(ROOT, process.env.SECRETS_DIR ?? ".secrets");
		writeSecrets(dir, parseArgs(process.argv.slice(2)), line => console.log(line));
		const shown = dir.startsWith(`${process.cwd()}${path.sep}`) ? path.relative(process.cwd(), dir) : dir;
		console.log(`secrets in ${shown}/ (keep them out of git and out of backups you share)`);
	} catch (err) {
		console.error((err as Error).message);
		process.exit(2);
	}
}
