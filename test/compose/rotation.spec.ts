import { MongoClient } from "mongodb";
import { writeSecrets, type SecretName } from "../../scripts/secrets";
import type { AcceptedTask, TaskDocument } from "../../lib/task";
import { amqpFrom, basic, compose, containers, dotEnvValue, readSecret } from "../support/compose";
import { eventually } from "../support/eventually";
import { postTask, titled } from "../support/http";
import { connectToStack, runTag, type Stack } from "../support/stack";

/**
 * Rotating every password of the running docker-compose stack the documented way
 * (docs/security-secrets.md): `npm run secrets -- --rotate ...`, then `docker compose up -d
 * --force-recreate`, without `down -v`. scripts/compose-test.sh runs it last on the scaled stack:
 * it leaves new secrets in SECRETS_DIR.
 */

const UP_TIMEOUT_S = Number(process.env.COMPOSE_TEST_UP_TIMEOUT ?? 240);
const ROTATED: SecretName[] = ["rabbit_password", "rabbit_admin_password", "mongo_password", "mongo_admin_password"];

describe("rotating the secrets of the docker-compose stack", () => {
	let stack: Stack;
	let before: Record<string, string>;
	let after: Record<string, string>;
	let taskBefore: AcceptedTask;
	const mongoPort = process.env.COMPOSE_TEST_MONGO_PORT;
	const mongoLogin = (user: string, password: string) =>
		MongoClient.connect(`mongodb://${user}:${encodeURIComponent(password)}@127.0.0.1:${mongoPort}/?authSource=admin`, { serverSelectionTimeoutMS: 10_000 });

	beforeAll(
		async () => {
			stack = await connectToStack();
			const response = await postTask(stack.gatewayUrl("flask"), titled(`${runTag()} before rotation`));
			expect(response.status).toBe(202);
			taskBefore = (await response.json()) as AcceptedTask;
			before = Object.fromEntries(ROTATED.map(name => [name, readSecret(name)]));
			writeSecrets(process.env.SECRETS_DIR as string, ROTATED, () => undefined);
			after = Object.fromEntries(ROTATED.map(name => [name, readSecret(name)]));
			const scale = ["--scale", "worker-py=3", "--scale", "worker-go=2"];
			await compose(["up", "-d", "--wait", "--wait-timeout", String(UP_TIMEOUT_S), "--force-recreate", ...scale], (UP_TIMEOUT_S + 30) * 1000);
			stack = await connectToStack();
		},
		(UP_TIMEOUT_S + 60) * 1000,
	);

	it("rotated every value", () => {
		for (const name of ROTATED) expect({ name, changed: after[name] !== before[name] }).toEqual({ name, changed: true });
	});

	it("keeps the data, and stores new tasks through gateways and workers that log in with the new passwords", async () => {
		const response = await postTask(stack.gatewayUrl("go"), titled(`${runTag()} after rotation`));
		expect(response.status).toBe(202);
		const taskAfter = (await response.json()) as AcceptedTask;
		const mongo = await mongoLogin(dotEnvValue("MONGO_USER"), after.mongo_password);
		try {
			const tasks = mongo.db(stack.dbName).collection<TaskDocument>("tasks");
			const stored = await eventually(
				"both tasks stored",
				async () => {
					const found = await tasks.find({ _id: { $in: [taskBefore.id, taskAfter.id] } }).toArray();
					return found.length === 2 ? found : undefined;
				},
				60_000,
				250,
			);
			expect(stored.map(task => task.status)).toEqual(["processed", "processed"]);
		} finally {
			await mongo.close();
		}
	}, 90_000);

	it("refuses the old MongoDB passwords of the application user and the administrator, and takes the new ones", async () => {
		for (const [user, secret] of [
			[dotEnvValue("MONGO_USER"), "mongo_password"],
			[dotEnvValue("MONGO_ADMIN_USER"), "mongo_admin_password"],
		]) {
			await expect(mongoLogin(user, before[secret])).rejects.toMatchObject({ code: 18 });
			await (await mongoLogin(user, after[secret])).close();
		}
	});

	it("refuses the old RabbitMQ passwords on the management API and AMQP, and takes the new ones", async () => {
		const whoami = (user: string, password: string) =>
			fetch(`http://127.0.0.1:${stack.env.RABBITMQ_MANAGEMENT_PORT}/api/whoami`, { headers: { authorization: basic(user, password) } }).then(
				response => response.status,
			);
		const admin = dotEnvValue("RABBIT_ADMIN_USER");
		expect([await whoami(admin, before.rabbit_admin_password), await whoami(admin, after.rabbit_admin_password)]).toEqual([401, 200]);
		const [gateway] = await containers("api-flask");
		const user = dotEnvValue("RABBIT_USER");
		const queue = `MOL-${stack.namespace}.rotation-check`;
		expect(await amqpFrom(gateway, user, before.rabbit_password, queue)).toEqual({ login: "ACCESS_REFUSED" });
		expect(await amqpFrom(gateway, user, after.rabbit_password, queue)).toEqual({ login: "accepted", declare: "declared" });
	});
});
