#!/bin/bash
# Entrypoint of the RabbitMQ nodes in docker-compose.yml and docker-compose.ha.yml, before the
# image's own (docker-entrypoint.sh). From the secrets it is given as files (*_FILE, as Docker and
# Kubernetes provide them) or variables, at every start:
#   - refuses to start without an Erlang cookie, and writes it where RabbitMQ and its CLI tools
#     read it ($HOME/.erlang.cookie), so every node of a cluster has the one its operator chose;
#   - writes the definitions that security.conf has RabbitMQ import at every boot: the vhost, an
#     administrator (RABBIT_ADMIN_USER, tag administrator: the management UI) and the cluster's
#     application user (RABBIT_USER, no tag: no management access) with permissions on the task
#     queue, its dead-letter queue and Moleculer's exchanges and queues of NAMESPACE only.
# A boot imports the users again with the current passwords, so rotating one needs a restart, not
# an empty volume. RabbitMQ creates no default guest user when definitions are imported at boot.
set -euo pipefail

die() {
	echo "notes-tasks entrypoint: $*" >&2
	exit 1
}

# NAME, or the contents of the file NAME_FILE names (without trailing line breaks), as
# lib/config.ts's secret() reads them.
secret() {
	local name=$1 file_name="$1_FILE" value
	if [[ -n ${!file_name:-} ]]; then
		[[ -z ${!name:-} ]] || die "set $name or ${name}_FILE, not both"
		[[ -f ${!file_name} && -r ${!file_name} ]] || die "${name}_FILE names ${!file_name}, which cannot be read"
		value=$(<"${!file_name}")
	else
		value=${!name:-}
	fi
	[[ -n ${value//[[:space:]]/} ]] || die "$name (or ${name}_FILE) is empty or not set: run \`npm run secrets\` (docs/security-secrets.md)"
	printf '%s' "$value"
}

# A name that goes into JSON and a regular expression unquoted.
plain() {
	[[ $2 =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "$1 must be letters, digits, '.', '_' or '-', got \"$2\""
	printf '%s' "$2"
}

# RabbitMQ's rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password)), 4 random
# bytes of salt. Bytes pass between the tools as hex, since a shell variable cannot hold a NUL.
password_hash() {
	local salt digest
	salt=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
	digest=$({ printf '%b' "$(sed 's/../\\x&/g' <<<"$salt")"; printf '%s' "$1"; } | sha256sum | cut -c1-64)
	printf '%b' "$(sed 's/../\\x&/g' <<<"$salt$digest")" | base64 -w0
}

cookie=$(secret RABBIT_ERLANG_COOKIE)
[[ $cookie =~ ^[A-Za-z0-9]{20,255}$ ]] || die "the Erlang cookie must be 20 to 255 letters or digits"
admin_user=$(plain RABBIT_ADMIN_USER "$(secret RABBIT_ADMIN_USER)")
admin_password=$(secret RABBIT_ADMIN_PASSWORD)
app_user=$(plain RABBIT_USER "$(secret RABBIT_USER)")
app_password=$(secret RABBIT_PASSWORD)
[[ $admin_user != "$app_user" ]] || die "RABBIT_ADMIN_USER and RABBIT_USER must differ"
vhost=${RABBIT_VHOST:-/}
[[ $vhost == / ]] || vhost=$(plain RABBIT_VHOST "$vhost")
namespace=$(plain NAMESPACE "${NAMESPACE:-}")
queue=$(plain RABBIT_QUEUE "${RABBIT_QUEUE:-}")

# The Erlang cookie must be readable by its owner only. A file of an earlier start is replaced.
cookie_file=${HOME:?}/.erlang.cookie
rm -f "$cookie_file"
(umask 077 && printf '%s' "$cookie" >"$cookie_file")
chmod 400 "$cookie_file"

# What the cluster declares and uses: Moleculer's exchanges and queues (MOL-<namespace>.*), the
# task queue and its dead-letter queue; writing to a queue by name goes through amq.default.
# The names are checked plain above; '.' is the only character to quote for the regex, and a
# backslash is written twice in JSON.
quote() { printf '%s' "${1//./\\\\.}"; }
names="MOL-$(quote "$namespace")\\\\..*|$(quote "$queue")|$(quote "$queue")\\\\.dead"
# security.conf names the same file; RABBIT_DEFINITIONS_FILE moves it for the unit test.
definitions=${RABBIT_DEFINITIONS_FILE:-/tmp/notes-tasks-definitions.json}
(umask 077 && cat >"$definitions") <<JSON
{
  "vhosts": [{ "name": "$vhost" }],
  "users": [
    { "name": "$admin_user", "password_hash": "$(password_hash "$admin_password")", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator" },
    { "name": "$app_user", "password_hash": "$(password_hash "$app_password")", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "" }
  ],
  "permissions": [
    { "user": "$admin_user", "vhost": "$vhost", "configure": ".*", "write": ".*", "read": ".*" },
    { "user": "$app_user", "vhost": "$vhost", "configure": "^($names)\$", "write": "^(amq\\\\.default|$names)\$", "read": "^($names)\$" }
  ]
}
JSON
unset cookie admin_password app_password

exec docker-entrypoint.sh "$@"
