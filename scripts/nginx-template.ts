import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./stack-control";

/** The one Nginx template: the local stack renders it with envsubst, the nginx image at start. */
export const NGINX_TEMPLATE = "nginx/templates/default.conf.template";

/** Variables of the official nginx image itself: its entrypoint substitutes those as well. */
const NGINX_IMAGE_ENV: Record<string, string> = {
	PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	HOME: "/root",
	HOSTNAME: "0123456789ab",
	NGINX_VERSION: "1.28.0",
	PKG_RELEASE: "1",
	DYNPKG_RELEASE: "1",
	NJS_VERSION: "0.8.10",
	NJS_RELEASE: "1",
};

/**
 * Renders the Nginx template as the official image's 20-envsubst-on-templates.sh does:
 * envsubst restricted to the names of the variables defined in the container, so that Nginx's
 * own $variables stay as they are.
 */
export function renderNginxTemplate(containerEnv: Record<string, string>): string {
	const env = { ...NGINX_IMAGE_ENV, ...containerEnv };
	const defined = Object.keys(env)
		.map(name => `\${${name}}`)
		.join(" ");
	const result = spawnSync("envsubst", [defined], { input: readFileSync(path.join(ROOT, NGINX_TEMPLATE), "utf8"), env, encoding: "utf8" });
	if (result.error) throw new Error(`envsubst (Debian package gettext-base) could not run: ${result.error.message}`);
	if (result.status !== 0) throw new Error(`envsubst failed: ${result.stderr}`);
	return result.stdout;
}

/** The ${NAME} placeholders of the Nginx template. */
export function templateVariables(template = readFileSync(path.join(ROOT, NGINX_TEMPLATE), "utf8")): string[] {
	const body = template
		.split("\n")
		.filter(line => !line.trimStart().startsWith("#"))
		.join("\n");
	return [...new Set([...body.matchAll(/\$\{([A-Z][A-Z0-9_]*)\}/g)].map(match => match[1]))].sort();
}
