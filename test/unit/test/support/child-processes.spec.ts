import type { ChildProcess } from "node:child_process";
import { spawnTracked } from "../../../support/child-processes";
import { eventually } from "../../../support/eventually";

describe("children a test starts", () => {
	let fromBeforeAll: ChildProcess;
	let fromTest: ChildProcess;
	const alive = (child: ChildProcess) => {
		try {
			process.kill(child.pid as number, 0);
			return true;
		} catch {
			return false;
		}
	};

	beforeAll(() => {
		fromBeforeAll = spawnTracked(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
	});

	it("run until the test ends, however it ends", () => {
		// A child with a child of its own, as scripts/repl.sh starts node.
		fromTest = spawnTracked("bash", ["-c", `"${process.execPath}" -e "setInterval(() => {}, 1000)"; true`], { stdio: "ignore" });
		expect(alive(fromTest)).toBe(true);
	});

	it("are killed after it, with their process group; one from beforeAll lives until the file ends", async () => {
		expect(fromTest.signalCode).toBe("SIGKILL");
		// The group's other members are orphans once its leader is gone: gone when init has reaped them.
		const groupGone = () => {
			try {
				process.kill(-(fromTest.pid as number), 0);
				return undefined;
			} catch {
				return true;
			}
		};
		await eventually("the child's process group gone", async () => groupGone(), 5_000);
		expect(alive(fromBeforeAll)).toBe(true);
	});
});
