import type { ChildProcess } from "node:child_process";
import { spawnTracked } from "../support/child-processes";

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

	it("are killed after it, with their process group; one from beforeAll lives until the file ends", () => {
		expect(fromTest.signalCode).toBe("SIGKILL");
		expect(() => process.kill(-(fromTest.pid as number), 0)).toThrow();
		expect(alive(fromBeforeAll)).toBe(true);
	});
});
