import { parseDockerfile, readText, RUNNER_COMMAND } from "../support/deployment-files";

/** The Dockerfile: what the image holds and how it runs a node. */

describe("Dockerfile", () => {
	const instructions = parseDockerfile(readText("Dockerfile"));
	const froms = instructions.filter(instruction => instruction.keyword === "FROM");
	const lastStage = froms.length - 1;
	const args = (keyword: string, stage = lastStage) =>
		instructions.filter(instruction => instruction.stage === stage && instruction.keyword === keyword).map(instruction => instruction.args);

	it("builds in one stage and runs in another, both on the major version of Node that npm ci installs", () => {
		const packageJson = JSON.parse(readText("package.json")) as { devDependencies: Record<string, string> };
		const major = packageJson.devDependencies.node.split(".")[0];
		expect(froms.length).toBeGreaterThanOrEqual(2);
		for (const from of froms) expect(from.args).toMatch(new RegExp(`^node:${major}(-bookworm-slim|-bookworm|-slim)? AS \\w+$`, "i"));
	});

	it("compiles with npm ci and npm run build in the build stage", () => {
		const buildRuns = args("RUN", 0).join("\n");
		expect(buildRuns).toContain("npm ci");
		expect(buildRuns).toContain("npm run build");
		const packageJson = JSON.parse(readText("package.json")) as { scripts: Record<string, string> };
		expect(packageJson.scripts.build).toBe("tsc -p tsconfig.build.json");
	});

	it("ships production dependencies and the compiled dist/ only", () => {
		const buildStage = /AS (\w+)$/i.exec(froms[0].args)?.[1];
		expect(args("RUN").join("\n")).toMatch(/npm ci --omit=dev/);
		expect(args("COPY")).toContain(`--from=${buildStage} /app/dist ./dist`);
		expect(args("RUN").join("\n")).not.toMatch(/npm run build|tsc/);
	});

	it("runs as the non-root node user under tini", () => {
		const users = args("USER");
		expect(users.at(-1)).toBe("node");
		expect(args("RUN").join("\n")).toMatch(/apt-get install .*\btini\b/);
		expect(JSON.parse(args("ENTRYPOINT").at(-1) as string)).toEqual(["/usr/bin/tini", "--"]);
	});

	it("starts moleculer-runner in exec form, as `npm run node` does", () => {
		const cmd = JSON.parse(args("CMD").at(-1) as string) as string[];
		expect(cmd).toEqual(RUNNER_COMMAND);
		const packageJson = JSON.parse(readText("package.json")) as { scripts: Record<string, string> };
		expect(packageJson.scripts.node).toBe(cmd.join(" "));
	});

	it("loads services from dist/services, where the build writes them", () => {
		expect(args("ENV").join(" ")).toMatch(/\bSERVICEDIR=dist\/services\b/);
		const tsconfig = JSON.parse(readText("tsconfig.json")) as { compilerOptions: { outDir: string; rootDir: string } };
		expect(tsconfig.compilerOptions).toMatchObject({ outDir: "dist", rootDir: "." });
	});

	it("keeps the build context to what it copies: no .env, no node_modules", () => {
		const ignore = readText(".dockerignore")
			.split("\n")
			.filter(line => line && !line.startsWith("#"));
		expect(ignore[0]).toBe("*");
		const allowed = ignore.slice(1).map(line => line.replace(/^!/, ""));
		const copied = instructions
			.filter(instruction => instruction.keyword === "COPY" && !instruction.args.startsWith("--from"))
			.flatMap(instruction => instruction.args.split(" ").slice(0, -1));
		expect([...new Set(copied)].sort()).toEqual([...allowed].sort());
	});
});
