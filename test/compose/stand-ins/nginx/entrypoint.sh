#!/bin/bash
# What the official image's /docker-entrypoint.d/20-envsubst-on-templates.sh does: each
# /etc/nginx/templates/<name>.template becomes /etc/nginx/conf.d/<name>, with only the
# variables defined in the container substituted, so that Nginx's own $variables stay.
set -euo pipefail

# shellcheck disable=SC2016,SC2046 # literal ${NAME} for envsubst, one per variable name
defined=$(printf '${%s} ' $(env | cut -d= -f1))
for template in /etc/nginx/templates/*.template; do
	[[ -f $template ]] || continue
	output=/etc/nginx/conf.d/$(basename "$template" .template)
	envsubst "$defined" <"$template" >"$output"
	echo "stand-in-entrypoint: rendered $template to $output"
done
exec "$@"
