import { decodeCursor, encodeCursor } from "../../../../lib/store/task-reads";
import { readJson, type ApiError } from "../../../support/http";
import { embeddedClusterForSuite } from "../../../support/embedded-cluster";

/** How a caller names a page of the list (lib/store/task-reads.ts): how deep pages by number reach, and the cursor beyond. */

describe("pages by number", () => {
	const cluster = embeddedClusterForSuite("pages-node");

	it.each([
		["page=51", 51 * 20],
		["page=11&pageSize=100", 1100],
		["page=1000000000000", 1e12 * 20],
	])("refuses %s (%d tasks deep) with 422, pointing to ?after=", async query => {
		const res = await fetch(`${cluster().flaskUrl}/tasks?${query}`);
		expect(res.status).toBe(422);
		const body = await readJson<ApiError>(res);
		expect(body.data[0]).toMatchObject({ field: "page", type: "pageReach" });
		expect(body.data[0].message).toContain("?after=");
	});

	it.each(["page=50", "page=10&pageSize=100"])("serves %s, the last page within reach", async query => {
		expect((await fetch(`${cluster().flaskUrl}/tasks?${query}`)).status).toBe(200);
	});
});

describe("list cursor", () => {
	it("round-trips a position", () => {
		const position = { createdAt: new Date(Date.UTC(2026, 10, 29, 12, 0, 0, 7)), id: "0d6c4f0e-8d3e-4c49-9a43-7d1f7c9b1a11" };
		expect(decodeCursor(encodeCursor(position))).toEqual(position);
	});
});
