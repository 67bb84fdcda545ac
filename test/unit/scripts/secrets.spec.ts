import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { KEEPS_PREVIOUS, SECRET_NAMES, writeSecrets } from "../../../scripts/secrets";

/** scripts/secrets.ts (`npm run secrets`): fresh secrets once, kept afterwards, rotated on demand. */

describe("npm run secrets", () => {
	let dir: string;
	const read = (name: string) => readFileSync(path.join(dir, name), "utf8").trimEnd();
	const quiet = () => undefined;

	beforeEach(() => {
		dir = path.join(mkdtempSync(path.join(tmpdir(), "secrets-spec-")), ".secrets");
	});
	afterEach(() => rmSync(path.dirname(dir), { recursive: true, force: true }));

	it("writes every secret, random, in a directory only its owner can enter", () => {
		writeSecrets(dir, [], quiet);
		expect(statSync(dir).mode & 0o777).toBe(0o700);
		const values = SECRET_NAMES.map(read);
		expect(new Set(values).size).toBe(SECRET_NAMES.length);
		for (const value of values) expect(value).toMatch(/^[A-Za-z0-9_-]{32,}$/);
		expect(read("rabbit_erlang_cookie")).toMatch(/^[A-Z]{32}$/);
		// Readable by the containers' users, which bind mounts do not change.
		for (const name of SECRET_NAMES) expect(statSync(path.join(dir, name)).mode & 0o777).toBe(0o644);
		expect(read(`${KEEPS_PREVIOUS}.previous`)).toBe(read(KEEPS_PREVIOUS));
	});

	it("keeps existing secrets, and rotates only the one asked for, keeping the administrator's previous password", () => {
		writeSecrets(dir, [], quiet);
		const before = Object.fromEntries(SECRET_NAMES.map(name => [name, read(name)]));
		writeSecrets(dir, [], quiet);
		expect(Object.fromEntries(SECRET_NAMES.map(name => [name, read(name)]))).toEqual(before);
		writeSecrets(dir, [KEEPS_PREVIOUS, "rabbit_password"], quiet);
		expect(read(KEEPS_PREVIOUS)).not.toBe(before[KEEPS_PREVIOUS]);
		expect(read(`${KEEPS_PREVIOUS}.previous`)).toBe(before[KEEPS_PREVIOUS]);
		expect(read("rabbit_password")).not.toBe(before.rabbit_password);
		expect(read("mongo_password")).toBe(before.mongo_password);
		expect(existsSync(path.join(dir, "rabbit_password.tmp"))).toBe(false);
	});
});
