import { composeService, environmentOf, loadCompose, loadDotEnv, readText } from "../../support/deployment-files";
import { renderNginxTemplate } from "../../../scripts/nginx-template";

/** The Nginx template, rendered as the nginx image renders it. */

const dotEnv = loadDotEnv();

describe("Nginx template rendering", () => {
	const template = readText("nginx/templates/default.conf.template");
	const rendered = renderNginxTemplate(environmentOf(composeService(loadCompose(dotEnv), "nginx")));
	const nginxVariables = (text: string) => [...text.matchAll(/\$[a-z_][a-z0-9_]*/g)].map(match => match[0]);

	it("fills every placeholder", () => {
		expect(rendered).not.toMatch(/\$\{/);
		expect(rendered).toContain(`server api-flask:${dotEnv.FLASK_PORT} resolve;`);
		expect(rendered).toContain(`listen ${dotEnv.NGINX_PORT};`);
		expect(rendered).toContain(`client_max_body_size ${dotEnv.MAX_BODY_BYTES};`);
	});

	it("leaves Nginx's own $variables intact", () => {
		const own = nginxVariables(template);
		expect(own).toEqual(expect.arrayContaining(["$host", "$request_uri", "$uri", "$http_x_request_id"]));
		expect(nginxVariables(rendered)).toEqual(own);
	});
});
