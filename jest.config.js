/**
 * Eight suites; integration, e2e, security and faults need the local stack (`npm test` brings it
 * up); security checks what the running stack exposes and how its edge holds (test/security).
 * faults restarts and kills parts of the stack, so it runs alone, after the others. compose
 * needs the docker-compose stacks that `npm run test:compose` brings up, one per spec
 * (compose.spec.ts the scaled stack, ha-overlay.spec.ts the stack with docker-compose.ha.yml), ha
 * the 3-node RabbitMQ stack that `npm run test:ha` brings up, swarm the three-engine swarm of
 * `npm run test:swarm`.
 */
const project = (name, extra = {}) => ({
	displayName: name,
	preset: "ts-jest",
	testEnvironment: "node",
	testMatch: [`<rootDir>/test/${name}/**/*.spec.ts`],
	// .compose/ holds Docker's data root (image layers with their own package.json files).
	modulePathIgnorePatterns: ["<rootDir>/.compose/", "<rootDir>/.swarm/"],
	...extra,
});

module.exports = {
	projects: [
		project("unit"),
		project("integration", { slowTestThreshold: 30 }),
		project("e2e", { slowTestThreshold: 60 }),
		project("security", { slowTestThreshold: 60 }),
		project("faults", { slowTestThreshold: 300 }),
		project("compose", { slowTestThreshold: 300 }),
		project("ha", { slowTestThreshold: 300 }),
		project("swarm", { slowTestThreshold: 300 }),
	],
	testTimeout: 30_000,
};
