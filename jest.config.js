/**
 * Four suites; integration, e2e and faults need the local stack (`npm test` brings it up).
 * faults restarts and kills parts of the stack, so it runs alone, after the others.
 */
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
		project("faults", { slowTestThreshold: 300 }),
	],
	testTimeout: 30_000,
};
