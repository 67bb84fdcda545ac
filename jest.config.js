/** Three suites; integration and e2e need the local stack (`npm test` brings it up). */
const project = (name, extra = {}) => ({
	displayName: name,
	preset: "ts-jest",
	testEnvironment: "node",
	testMatch: [`<rootDir>/test/${name}/**/*.spec.ts`],
	...extra,
});

module.exports = {
	projects: [
		project("unit"),
		project("integration", { slowTestThreshold: 30 }),
		project("e2e", { slowTestThreshold: 60 }),
	],
	testTimeout: 30_000,
};
