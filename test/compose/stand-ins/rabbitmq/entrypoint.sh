#!/bin/bash
# Writes the configuration the official image derives from its environment, then runs
# RabbitMQ in the foreground as the rabbitmq user (as the image does), logging to stdout.
set -euo pipefail

# guest may log in from other hosts (the official image allows it too); the account comes
# from RABBITMQ_DEFAULT_USER/PASS and is created on the first start with an empty volume.
cat >/etc/rabbitmq/rabbitmq.conf <<CONF
loopback_users.guest = false
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
log.console = true
log.console.level = info
log.file = false
CONF

# A fresh named volume may come up owned by root.
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
export HOME=/var/lib/rabbitmq
exec runuser -u rabbitmq -- /usr/lib/rabbitmq/bin/rabbitmq-server
