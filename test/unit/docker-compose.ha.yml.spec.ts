import { loadConfig } from "../../lib/config";
import { environmentOf, loadCompose, loadDotEnv, readText, type ComposeService } from "../support/deployment-files";

/**
 * docker-compose.ha.yml, checked from its files: three RabbitMQ nodes that can form one cluster,
 * and cluster nodes that use all three with a quorum task queue once compose has merged the
 * overlay into docker-compose.yml (mappings such as environment and depends_on merge key by key).
 */

const dotEnv = loadDotEnv();
const base = loadCompose(dotEnv).services;
const overlay = loadCompose(dotEnv, "docker-compose.ha.yml");
const RABBIT_NODES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"];
const CLUSTER_NODES = ["api-flask", "api-go", "worker-py", "worker-go", "repl"];

/** Volumes by their path in the container, as compose merges them. */
const byTarget = (volumes: string[] = []): Map<string, string> => new Map(volumes.map(volume => [volume.split(":")[1], volume]));

/**
 * What compose runs for a service: the base file's definition (or, for a service that `extends`
 * one of docker-compose.yml, that one's) with the overlay's merged in.
 */
function merged(name: string): ComposeService {
	const over = overlay.services[name] ?? {};
	const under = over.extends ? base[over.extends.service] : (base[name] ?? {});
	return {
		...under,
		...over,
		environment: { ...under.environment, ...over.environment },
		depends_on: { ...under.depends_on, ...over.depends_on },
		volumes: [...new Map([...byTarget(under.volumes), ...byTarget(over.volumes)]).values()],
	};
}

describe("docker-compose.ha.yml", () => {
	it("runs three RabbitMQ nodes like the base file's, with data of their own", () => {
		for (const name of ["rabbitmq-2", "rabbitmq-3"]) expect(overlay.services[name].extends).toEqual({ file: "docker-compose.yml", service: "rabbitmq" });
		const nodes = RABBIT_NODES.map(merged);
		expect(nodes.map(node => node.image)).toEqual(RABBIT_NODES.map(() => base.rabbitmq.image));
		expect(nodes.map(node => node.hostname)).toEqual(RABBIT_NODES);
		const dataVolumes = nodes.map(node => node.volumes?.find(volume => volume.endsWith(":/var/lib/rabbitmq")));
		expect(new Set(dataVolumes).size).toBe(3);
		for (const node of nodes) expect(node.volumes).toContain("./rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro");
		expect(Object.keys(overlay.volumes ?? {})).toEqual(expect.arrayContaining(["rabbitmq-2-data", "rabbitmq-3-data"]));
	});

	it("gives every node the one Erlang cookie of the secret rabbit_erlang_cookie, and none by default", () => {
		for (const node of RABBIT_NODES.map(merged)) {
			expect(node.secrets).toContain("rabbit_erlang_cookie");
			expect(environmentOf(node)).toMatchObject({ RABBIT_ERLANG_COOKIE_FILE: "/run/secrets/rabbit_erlang_cookie" });
			expect(environmentOf(node).RABBITMQ_ERLANG_COOKIE).toBeUndefined();
		}
		expect(readText("docker-compose.ha.yml") + readText("docker-compose.yml")).not.toMatch(/RABBITMQ_ERLANG_COOKIE|cookie:-/);
	});

	it("lets the nodes find each other by host name (classic config peer discovery)", () => {
		const conf = readText("rabbitmq/cluster.conf");
		expect(conf).toMatch(/^cluster_formation\.peer_discovery_backend = classic_config$/m);
		const listed = [...conf.matchAll(/^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$/gm)].map(match => match[1]);
		expect(listed).toEqual(RABBIT_NODES);
	});

	it("points every cluster node at the three RabbitMQ nodes with a quorum task queue, once all three are healthy", () => {
		for (const name of CLUSTER_NODES) {
			const node = merged(name);
			const settings = loadConfig({
				...dotEnv,
				...environmentOf(node),
				NODE_ID: "check",
				RABBIT_PASSWORD_FILE: "",
				RABBIT_PASSWORD: "the-password",
				MONGO_URI: "",
			});
			expect({ name, urls: settings.rabbitUrls, type: settings.taskQueueType }).toEqual({
				name,
				urls: RABBIT_NODES.map(host => `amqp://${dotEnv.RABBIT_USER}:the-password@${host}:5672/%2F`),
				type: "quorum",
			});
			for (const rabbit of RABBIT_NODES) expect(node.depends_on?.[rabbit]).toEqual({ condition: "service_healthy" });
			// The overlay adds to the role's environment; it must not drop what the base file sets.
			expect(environmentOf(node)).toMatchObject(environmentOf(base[name]));
		}
	});
});
