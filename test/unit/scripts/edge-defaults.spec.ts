import { loadDotEnv, readText } from "../../support/deployment-files";
import { templateVariables } from "../../../scripts/nginx-template";

/**
 * The edge's settings have one default each, .env's: the local stack (scripts/stack.sh) and the
 * swarm stack file, which read no .env, fall back to the same values, and the Kubernetes Ingress
 * of the gateways spells the POST limits as ingress-nginx annotations.
 */

const dotEnv = loadDotEnv();
const edgeSettings = templateVariables().filter(name => /^(NGINX_(POST|LIST)_\w+|NGINX_LIMIT_EXEMPT|NGINX_CLIENT_TIMEOUT|RABBITMQ_UI_ALLOW)$/.test(name));

describe("defaults of the edge's settings", () => {
	it("covers the limits of both POSTs and lists", () => {
		expect(edgeSettings).toEqual(expect.arrayContaining(["NGINX_POST_RATE", "NGINX_LIST_RATE", "NGINX_LIST_BURST", "NGINX_LIST_QUEUE"]));
	});

	it.each(edgeSettings)("%s: scripts/stack.sh and docker-stack.yml default to .env's value", name => {
		const stackSh = readText("scripts/stack.sh").match(new RegExp(`^${name}=\\$\\{${name}:?-(.*)\\}$`, "m"))?.[1];
		const swarm = readText("docker-stack.yml").match(new RegExp(`^\\s+${name}: \\$\\{${name}:-(.*)\\}$`, "m"))?.[1];
		expect({ stackSh, swarm }).toEqual({ stackSh: dotEnv[name], swarm: dotEnv[name] });
	});

	it("k8s/ingress.yaml holds each client of the gateways to .env's POST limits", () => {
		const annotation = (name: string) =>
			[...readText("k8s/ingress.yaml").matchAll(new RegExp(`nginx\\.ingress\\.kubernetes\\.io/${name}: "(\\d+)"`, "g"))].map(match => Number(match[1]));
		const [rate, multiplier, connections] = ["limit-rps", "limit-burst-multiplier", "limit-connections"].map(annotation);
		expect({ rate, burst: rate.map((perSecond, i) => perSecond * multiplier[i]), connections }).toEqual({
			rate: [Number(dotEnv.NGINX_POST_RATE), Number(dotEnv.NGINX_POST_RATE)],
			burst: [Number(dotEnv.NGINX_POST_BURST), Number(dotEnv.NGINX_POST_BURST)],
			connections: [Number(dotEnv.NGINX_POST_CONCURRENCY), Number(dotEnv.NGINX_POST_CONCURRENCY)],
		});
	});
});
