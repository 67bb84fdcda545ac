#!/bin/bash
# What the official image's docker-entrypoint.sh does with `rabbitmq-server`: started as root, it
# hands the data directory to the rabbitmq user and runs as that user; started as any other user
# (compose's `user: rabbitmq`), it runs the server as it is. RabbitMQ runs in the foreground and
# logs to stdout (conf.d/10-defaults.conf).
set -euo pipefail

# Debian's /usr/sbin/rabbitmq-server wrapper would send the output to /var/log/rabbitmq.
[[ ${1:-} == rabbitmq-server ]] && set -- /usr/lib/rabbitmq/bin/rabbitmq-server "${@:2}"

if ((EUID == 0)); then
	# A fresh named volume may come up owned by root.
	chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
	export HOME=/var/lib/rabbitmq
	exec runuser -u rabbitmq -- "$@"
fi
exec "$@"
