import { loadDotEnv, readText } from "../../support/deployment-files";
import { templateVariables } from "../../../scripts/nginx-template";

/**
 * The edge's settings have one default each, .env's: the local stack (scripts/stack.sh) and the
 * swarm stack file, which read no .env, fall back to the same values.
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
});
