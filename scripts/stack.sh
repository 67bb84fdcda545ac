#!/usr/bin/env bash
# The whole Notes & Tasks cluster on one machine, without Docker: RabbitMQ, FerretDB (MongoDB
# wire protocol on SQLite), Nginx, one Node process per Moleculer node (each serving its metrics on
# a port of its own) and Prometheus scraping them. process-compose.yaml declares those processes,
# their readiness, order and restart policy; this script installs and builds what they need,
# renders their configuration into .stack/ (git-ignored, with the logs) and hands over to
# process-compose, which runs and supervises them (docs/local-stack.md).
#
#   scripts/stack.sh up              install what is missing, start what is down, wait until ready
#   scripts/stack.sh down            stop everything `up` started
#   scripts/stack.sh status          each process up or down (exit 1 if any is down)
#   scripts/stack.sh logs [-f] [x]   last lines of every log, or of one process or node (-f: follow)
#   scripts/stack.sh restart <x>     restart rabbitmq (or rq1..rq3), ferretdb, nginx, prometheus or one node (by id) and wait until ready
#   scripts/stack.sh kill <x>        SIGKILL one node or RabbitMQ node rqN, as a crash would, and keep it down until `start`
#   scripts/stack.sh start <x>       start what `kill` left down and wait until ready
#   scripts/stack.sh scale <role> N  run N nodes of worker-py or worker-go
#   scripts/stack.sh lead <rqN>      move the leader of the quorum task queue to RabbitMQ node rqN (RABBIT_NODES=3)
# A node that crashes (exits unasked) is restarted by process-compose within a few seconds.
#
# Settings (environment): NGINX_PORT (8080), FLASK_PORT (5001), GO_PORT (5002), WORKER_PY_COUNT (1),
# WORKER_GO_COUNT (1), NAMESPACE (notes-tasks), DB_NAME (mydb), RABBIT_QUEUE (task_queue), LOG_LEVEL (info),
# MAX_BODY_BYTES (16384), PROMETHEUS_PORT (9090), METRICS_BASE_PORT (3030; a node's metrics port is
# base + 1 for api-flask-1, + 2 for api-go-1, + 100 + n for worker-py-n, + 200 + n for worker-go-n;
# 0 runs the nodes without metrics and no Prometheus: Moleculer's own per-call metrics cost the
# gateways CPU, see docs/performance.md),
# STACK_TIMEOUT (seconds the stack may take to come up, 60), NODE_FLAGS (extra flags for each
# node's `node`, which NODE_OPTIONS refuses, e.g. `--cpu-prof --cpu-prof-dir=/tmp/profiles`: each
# node writes its CPU profile when it stops),
# RABBIT_NODES (1: Debian's own RabbitMQ node; 3: a cluster of three nodes rq1..rq3@localhost of our
# own, data in .stack/rabbitmq; `restart`, `kill` and `start` take rq1..rq3),
# RABBIT_QUEUE_TYPE (classic on one node, quorum on three; `up` with another type than the task
# queue has deletes the queue and its dead-letter queue while both are empty, and refuses otherwise),
# and the edge's settings of Nginx, as .env describes them (docs/security.md): RABBITMQ_UI_ALLOW
# (127.0.0.1,::1), NGINX_POST_RATE (20), NGINX_POST_BURST (40), NGINX_POST_CONCURRENCY (10),
# NGINX_LIST_RATE (10), NGINX_LIST_BURST (20), NGINX_LIST_QUEUE (40), NGINX_LIST_TOTAL_RATE (50),
# NGINX_LIST_TOTAL_QUEUE (200), NGINX_LIMIT_EXEMPT (127.0.0.1,::1), NGINX_CLIENT_TIMEOUT (10).
# Everything but Nginx listens on 127.0.0.1 only: the nodes (BIND_ADDRESS), Prometheus, FerretDB,
# and RabbitMQ with its management (the rendered rabbitmq.conf), Erlang distribution
# (rabbitmq/local-advanced.config) and epmd (ERL_EPMD_ADDRESS, in process-compose.yaml).
# Unset, RABBIT_NODES, RABBIT_QUEUE_TYPE and the worker counts are those of the running stack.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=$ROOT/.stack
LOGS=$STACK/logs
RUN=$STACK/run
BIN=$STACK/bin
PROCESS_COMPOSE=$BIN/process-compose
export PC_SOCKET_PATH=$RUN/process-compose.sock

# A setting of the running stack, as `up` wrote it to stack.env; empty when the stack is down.
running_setting() { if [[ -f $STACK/stack.env ]]; then sed -n "s/^$1=//p" "$STACK/stack.env"; fi; }
RUNNING_RABBIT_NODES=$(running_setting RABBIT_NODES)
RUNNING_QUEUE_TYPE=$(running_setting RABBIT_QUEUE_TYPE)

NGINX_PORT=${NGINX_PORT:-8080}
FLASK_PORT=${FLASK_PORT:-5001}
GO_PORT=${GO_PORT:-5002}
# One worker per role: on a 2-core machine more workers split the stream into smaller store
# batches and cost more CPU per task, for no more throughput (see docs/performance.md).
WORKER_PY_COUNT=${WORKER_PY_COUNT:-$(running_setting WORKER_PY_COUNT)}
WORKER_GO_COUNT=${WORKER_GO_COUNT:-$(running_setting WORKER_GO_COUNT)}
WORKER_PY_COUNT=${WORKER_PY_COUNT:-1}
WORKER_GO_COUNT=${WORKER_GO_COUNT:-1}
NAMESPACE=${NAMESPACE:-notes-tasks}
DB_NAME=${DB_NAME:-mydb}
RABBIT_QUEUE=${RABBIT_QUEUE:-task_queue}
LOG_LEVEL=${LOG_LEVEL:-info}
MAX_BODY_BYTES=${MAX_BODY_BYTES:-16384}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
METRICS_BASE_PORT=${METRICS_BASE_PORT:-3030}
TIMEOUT=${STACK_TIMEOUT:-60}
# Unset, the edge's settings are those of .env; set empty, a list names no client.
RABBITMQ_UI_ALLOW=${RABBITMQ_UI_ALLOW-127.0.0.1,::1}
NGINX_POST_RATE=${NGINX_POST_RATE:-20}
NGINX_POST_BURST=${NGINX_POST_BURST:-40}
NGINX_POST_CONCURRENCY=${NGINX_POST_CONCURRENCY:-10}
NGINX_LIST_RATE=${NGINX_LIST_RATE:-10}
NGINX_LIST_BURST=${NGINX_LIST_BURST:-20}
NGINX_LIST_QUEUE=${NGINX_LIST_QUEUE:-40}
NGINX_LIST_TOTAL_RATE=${NGINX_LIST_TOTAL_RATE:-50}
NGINX_LIST_TOTAL_QUEUE=${NGINX_LIST_TOTAL_QUEUE:-200}
NGINX_LIMIT_EXEMPT=${NGINX_LIMIT_EXEMPT-127.0.0.1,::1}
NGINX_CLIENT_TIMEOUT=${NGINX_CLIENT_TIMEOUT:-10}
RABBIT_NODES=${RABBIT_NODES:-${RUNNING_RABBIT_NODES:-1}}
[[ $RABBIT_NODES == 1 || $RABBIT_NODES == 3 ]] || { echo "[stack] ERROR: RABBIT_NODES must be 1 or 3, got '$RABBIT_NODES'" >&2; exit 2; }
if [[ -z ${RABBIT_QUEUE_TYPE:-} && $RABBIT_NODES == "$RUNNING_RABBIT_NODES" ]]; then RABBIT_QUEUE_TYPE=$RUNNING_QUEUE_TYPE; fi
# By default the single node keeps the original's classic queue; the cluster's nodes share one
# replicated on all of them, which is what the cluster is for.
if ((RABBIT_NODES > 1)); then RABBIT_QUEUE_TYPE=${RABBIT_QUEUE_TYPE:-quorum}; else RABBIT_QUEUE_TYPE=${RABBIT_QUEUE_TYPE:-classic}; fi
[[ $RABBIT_QUEUE_TYPE == classic || $RABBIT_QUEUE_TYPE == quorum ]] ||
	{ echo "[stack] ERROR: RABBIT_QUEUE_TYPE must be classic or quorum, got '$RABBIT_QUEUE_TYPE'" >&2; exit 2; }
RABBIT_PORT=5672
RABBIT_MANAGEMENT_PORT=15672
RABBIT_DIST_PORT=25672
if ((RABBIT_NODES > 1)); then
	# The cluster's node i listens on RABBIT_PORT + i - 1, its management on RABBIT_MANAGEMENT_PORT
	# + i - 1, Erlang distribution on RABBIT_DIST_PORT + i - 1: ports of their own, beside those
	# of Debian's node.
	RABBIT_PORT=5682
	RABBIT_MANAGEMENT_PORT=15682
	RABBIT_DIST_PORT=25682
fi
MONGO_PORT=27017
PACKAGES=(rabbitmq-server nginx gettext-base chromium tcpdump prometheus)

say() { printf '[stack] %s\n' "$*"; }

die() {
	printf '[stack] ERROR: %s\n' "$1" >&2
	if [[ -n ${2:-} && -f $2 ]]; then
		printf '[stack] last lines of %s:\n' "$2" >&2
		tail -n 30 "$2" | sed 's/^/    /' >&2
	fi
	exit 1
}

now() { date +%s.%N; }
since() { awk -v from="$1" -v to="$(now)" 'BEGIN { printf "%.1f", to - from }'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

metrics_on() { ((METRICS_BASE_PORT > 0)); }

# The node ids the settings ask for (process-compose.yaml derives the same from replica numbers).
nodes() {
	local i
	printf "%s\n" api-flask-1 api-go-1
	for ((i = 1; i <= WORKER_PY_COUNT; i++)); do echo "worker-py-$i"; done
	for ((i = 1; i <= WORKER_GO_COUNT; i++)); do echo "worker-go-$i"; done
}

metrics_port() {
	local node=$1 n=${1##*-}
	metrics_on || { echo 0; return 0; }
	case ${node%-*} in
		api-flask) echo $((METRICS_BASE_PORT + 1)) ;;
		api-go) echo $((METRICS_BASE_PORT + 2)) ;;
		worker-py) echo $((METRICS_BASE_PORT + 100 + n)) ;;
		worker-go) echo $((METRICS_BASE_PORT + 200 + n)) ;;
	esac
}

# The stack's process-compose answers on its socket.
supervised() { [[ -S $PC_SOCKET_PATH ]] && "$PROCESS_COMPOSE" project state >/dev/null 2>&1; }

# Runtime commands (status, kill, start, ...) talk to process-compose's REST API: scripts/stack-control.ts.
control() { (cd "$ROOT" && exec node_modules/.bin/tsx scripts/stack-control.ts "$@"); }

# --- what the processes need: packages and binaries --------------------------------------------

install_packages() {
	local missing=() package
	for package in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep "ok installed" >/dev/null || missing+=("$package")
	done
	((${#missing[@]} > 0)) || return 0
	say "installing Debian packages: ${missing[*]} (apt-get; takes a few minutes the first time)"
	apt-get update -qq >"$LOGS/apt.log" 2>&1 || die "apt-get update failed" "$LOGS/apt.log"
	# Debian starts a service it installs, unless policy-rc.d says no: the stack runs its own
	# RabbitMQ, Nginx and Prometheus, on the same ports.
	local policy=/usr/sbin/policy-rc.d ours=false
	if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=true; fi
	env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$LOGS/apt.log" 2>&1 || {
		if $ours; then rm -f "$policy"; fi
		die "apt-get install ${missing[*]} failed" "$LOGS/apt.log"
	}
	if $ours; then rm -f "$policy"; fi
}

# go_tool <name> <source files...>: builds tools/<name> into .stack/bin/<name> once, and again only
# when its sources change.
go_tool() {
	local name=$1 bin=$BIN/$1 hash started
	shift
	hash=$(cat "$@" | sha256sum | cut -d' ' -f1)
	if [[ -x $bin && $(cat "$bin.sha256" 2>/dev/null) == "$hash" ]]; then return 0; fi
	command -v go >/dev/null || die "Go is needed to build tools/$name once: install Go >= 1.26 (https://go.dev/dl/)"
	say "building $name from tools/$name (once, a few minutes cold; log: .stack/logs/$name-build.log)"
	started=$(now)
	mkdir -p "$BIN"
	if [[ -x $ROOT/tools/$name/build.sh ]]; then
		"$ROOT/tools/$name/build.sh" "$bin.tmp" >"$LOGS/$name-build.log" 2>&1 || die "building $name failed" "$LOGS/$name-build.log"
	else
		(cd "$ROOT/tools/$name" && go build -trimpath -o "$bin.tmp" "$(go list -f '{{.ImportPath}}' tool)") >"$LOGS/$name-build.log" 2>&1 ||
			die "building $name failed" "$LOGS/$name-build.log"
	fi
	mv "$bin.tmp" "$bin"
	echo "$hash" >"$bin.sha256"
	say "$name built in $(since "$started")s"
}

build_tools() {
	go_tool ferretdb "$ROOT"/tools/ferretdb/{*.go,go.mod,go.sum,build.sh,patches/*.patch}
	go_tool process-compose "$ROOT"/tools/process-compose/{go.mod,go.sum}
}

# --- configuration ----------------------------------------------------------------------------

# Each RabbitMQ node's config: Debian's node in .stack/rabbitmq/rabbit, the cluster's in
# .stack/rabbitmq/rqN with its own plugins file. AMQP and the management UI listen on loopback only
# (Nginx's /rabbitmq/ is the UI's way in); process-compose.yaml keeps epmd and Erlang distribution there too.
# Each ends with rabbitmq/limits.conf, RabbitMQ's largest message body (max_message_size), the
# file docker compose mounts too.
write_rabbitmq_files() {
	local index dir
	if ((RABBIT_NODES == 1)); then
		# rabbitmq-plugins starts an Erlang VM: only when the plugin is not on yet.
		grep -qs rabbitmq_management /etc/rabbitmq/enabled_plugins || rabbitmq-plugins -q enable --offline rabbitmq_management >/dev/null
		dir=$STACK/rabbitmq/rabbit
		mkdir -p "$dir"
		cat >"$dir/rabbitmq.conf" <<-CONF
			# Written by scripts/stack.sh: Debian's RabbitMQ node as the local stack runs it.
			listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
			management.tcp.ip = 127.0.0.1
			management.tcp.port = $RABBIT_MANAGEMENT_PORT
		CONF
		cat "$ROOT/rabbitmq/limits.conf" >>"$dir/rabbitmq.conf"
	else
		for index in 1 2 3; do
			dir=$STACK/rabbitmq/rq$index
			mkdir -p "$dir/mnesia" "$dir/log"
			cat >"$dir/rabbitmq.conf" <<-CONF
				# Written by scripts/stack.sh: node rq$index@localhost of the local 3-node cluster.
				listeners.tcp.default = 127.0.0.1:$((RABBIT_PORT + index - 1))
				management.tcp.ip = 127.0.0.1
				management.tcp.port = $((RABBIT_MANAGEMENT_PORT + index - 1))
			CONF
			cat "$ROOT/rabbitmq/limits.conf" >>"$dir/rabbitmq.conf"
			echo "[rabbitmq_management]." >"$dir/enabled_plugins"
		done
	fi
	chown -R rabbitmq:rabbitmq "$STACK/rabbitmq"
}

# Renders the shared template (nginx/templates, also used by docker-compose) for this machine,
# with a main config of our own so that pid, logs and temp files stay in .stack/nginx.
write_nginx_config() {
	local dir=$STACK/nginx
	mkdir -p "$dir/temp"
	# shellcheck disable=SC2016 # envsubst takes the variable names literally
	NGINX_PORT=$NGINX_PORT FLASK_UPSTREAM=127.0.0.1:$FLASK_PORT GO_UPSTREAM=127.0.0.1:$GO_PORT \
		RABBITMQ_MANAGEMENT_UPSTREAM=127.0.0.1:$RABBIT_MANAGEMENT_PORT NGINX_RESOLVER=127.0.0.1 \
		UPSTREAM_RESOLVE='' MAX_BODY_BYTES=$MAX_BODY_BYTES NGINX_ACCESS_LOG=$LOGS/nginx-access.log \
		RABBITMQ_UI_ALLOW=$RABBITMQ_UI_ALLOW NGINX_POST_RATE=$NGINX_POST_RATE NGINX_POST_BURST=$NGINX_POST_BURST \
		NGINX_POST_CONCURRENCY=$NGINX_POST_CONCURRENCY NGINX_LIST_RATE=$NGINX_LIST_RATE NGINX_LIST_BURST=$NGINX_LIST_BURST \
		NGINX_LIST_QUEUE=$NGINX_LIST_QUEUE NGINX_LIST_TOTAL_RATE=$NGINX_LIST_TOTAL_RATE \
		NGINX_LIST_TOTAL_QUEUE=$NGINX_LIST_TOTAL_QUEUE NGINX_LIMIT_EXEMPT=$NGINX_LIMIT_EXEMPT NGINX_CLIENT_TIMEOUT=$NGINX_CLIENT_TIMEOUT \
		envsubst '${NGINX_PORT} ${FLASK_UPSTREAM} ${GO_UPSTREAM} ${RABBITMQ_MANAGEMENT_UPSTREAM} ${NGINX_RESOLVER} ${UPSTREAM_RESOLVE} ${MAX_BODY_BYTES} ${NGINX_ACCESS_LOG} ${RABBITMQ_UI_ALLOW} ${NGINX_POST_RATE} ${NGINX_POST_BURST} ${NGINX_POST_CONCURRENCY} ${NGINX_LIST_RATE} ${NGINX_LIST_BURST} ${NGINX_LIST_QUEUE} ${NGINX_LIST_TOTAL_RATE} ${NGINX_LIST_TOTAL_QUEUE} ${NGINX_LIMIT_EXEMPT} ${NGINX_CLIENT_TIMEOUT}' \
		<"$ROOT/nginx/templates/default.conf.template" >"$dir/default.conf"
	cat >"$dir/nginx.conf" <<-CONF
		# Written by scripts/stack.sh: the local stack's own Nginx, not the system service.
		pid $dir/nginx.pid;
		error_log $LOGS/nginx.log warn;
		worker_processes 1;
		events { worker_connections 1024; }
		http {
		    client_body_temp_path $dir/temp/client_body;
		    proxy_temp_path $dir/temp/proxy;
		    fastcgi_temp_path $dir/temp/fastcgi;
		    uwsgi_temp_path $dir/temp/uwsgi;
		    scgi_temp_path $dir/temp/scgi;
		    include $dir/default.conf;
		}
	CONF
	nginx -p "$dir/" -e "$LOGS/nginx.log" -c nginx.conf -t -q 2>>"$LOGS/nginx.log" ||
		die "the rendered Nginx config is invalid (.stack/nginx/default.conf)" "$LOGS/nginx.log"
}

# Every node of the settings, by its metrics port. Prometheus re-reads the targets file by itself
# when `up` or `scale` rewrites it; nodes stopped since then show as down.
write_prometheus_config() {
	local node first=true
	mkdir -p "$STACK/prometheus"
	{
		echo "["
		for node in $(nodes); do
			$first || echo ","
			first=false
			printf '  {"targets": ["127.0.0.1:%s"], "labels": {"node": "%s", "role": "%s"}}' "$(metrics_port "$node")" "$node" "${node%-*}"
		done
		printf '\n]\n'
	} >"$STACK/prometheus/targets.json.tmp"
	mv "$STACK/prometheus/targets.json.tmp" "$STACK/prometheus/targets.json"
	cat >"$STACK/prometheus/prometheus.yml" <<-CONF
		# Written by scripts/stack.sh: the local stack's Prometheus, not Debian's system service.
		global:
		  # Short, so that a test or an operator sees a change within seconds; the nodes are few.
		  scrape_interval: 5s
		  evaluation_interval: 5s
		scrape_configs:
		  - job_name: notes-tasks
		    file_sd_configs:
		      - files: [$STACK/prometheus/targets.json]
		        refresh_interval: 5s
	CONF
}

# RABBIT_HOSTS of the cluster's clients; empty with Debian's single node (RABBIT_HOST applies).
rabbit_hosts() {
	((RABBIT_NODES > 1)) || return 0
	for index in 1 2 3; do echo "127.0.0.1:$((RABBIT_PORT + index - 1))"; done | paste -sd,
}

rabbit_management_ports() {
	for ((index = 1; index <= RABBIT_NODES; index++)); do echo $((RABBIT_MANAGEMENT_PORT + index - 1)); done | paste -sd,
}

# How the nodes and the clients reach the stack's servers: in node.env and stack.env alike.
connection_settings() {
	cat <<-EOF
		NAMESPACE=$NAMESPACE
		RABBIT_HOST=127.0.0.1
		RABBIT_PORT=$RABBIT_PORT
		RABBIT_HOSTS=$(rabbit_hosts)
		RABBIT_QUEUE=$RABBIT_QUEUE
		RABBIT_QUEUE_TYPE=$RABBIT_QUEUE_TYPE
		MONGO_URI=mongodb://127.0.0.1:$MONGO_PORT/
		DB_NAME=$DB_NAME
		FLASK_PORT=$FLASK_PORT
		GO_PORT=$GO_PORT
		MAX_BODY_BYTES=$MAX_BODY_BYTES
	EOF
}

# What every node starts with (process-compose.yaml reads it at each start). Every node runs a
# `tasks` store beside its role, as in docker-compose, and the image's V8 settings: a smaller young
# generation and a capped old one keep its peak RSS down (see the Dockerfile).
write_node_env() {
	{
		echo "# Written by scripts/stack.sh up: the settings of every Moleculer node of the local stack."
		connection_settings
		cat <<-EOF
			NO_COLOR=1
			NODE_OPTIONS='${NODE_OPTIONS:---max-semi-space-size=8 --max-old-space-size=96}'
			NODE_FLAGS='${NODE_FLAGS:-}'
			SERVICEDIR=dist/services
			BIND_ADDRESS=127.0.0.1
			LOG_LEVEL=$LOG_LEVEL
			METRICS_BASE_PORT=$METRICS_BASE_PORT
		EOF
	} >"$STACK/node.env"
}

write_stack_env() {
	{
		echo "# Written by scripts/stack.sh up: how clients (npm run repl, the e2e tests) reach the local stack."
		connection_settings
		cat <<-EOF
			RABBIT_NODES=$RABBIT_NODES
			RABBITMQ_MANAGEMENT_PORT=$RABBIT_MANAGEMENT_PORT
			RABBITMQ_MANAGEMENT_PORTS=$(rabbit_management_ports)
			NGINX_PORT=$NGINX_PORT
			RABBITMQ_UI_ALLOW="$RABBITMQ_UI_ALLOW"
			NGINX_POST_RATE=$NGINX_POST_RATE
			NGINX_POST_BURST=$NGINX_POST_BURST
			NGINX_POST_CONCURRENCY=$NGINX_POST_CONCURRENCY
			NGINX_LIST_RATE=$NGINX_LIST_RATE
			NGINX_LIST_BURST=$NGINX_LIST_BURST
			NGINX_LIST_QUEUE=$NGINX_LIST_QUEUE
			NGINX_LIST_TOTAL_RATE=$NGINX_LIST_TOTAL_RATE
			NGINX_LIST_TOTAL_QUEUE=$NGINX_LIST_TOTAL_QUEUE
			NGINX_LIMIT_EXEMPT="$NGINX_LIMIT_EXEMPT"
			NGINX_CLIENT_TIMEOUT=$NGINX_CLIENT_TIMEOUT
			STACK_NODES=$(nodes | paste -sd,)
			WORKER_PY_COUNT=$WORKER_PY_COUNT
			WORKER_GO_COUNT=$WORKER_GO_COUNT
			PROMETHEUS_PORT=$PROMETHEUS_PORT
			STACK_METRICS=$(for node in $(nodes); do echo "$node=127.0.0.1:$(metrics_port "$node")"; done | paste -sd,)
		EOF
	} >"$STACK/stack.env"
}

# What process-compose.yaml reads: ${...} in it comes from these.
export_settings() {
	export ROOT NGINX_PORT FLASK_PORT GO_PORT PROMETHEUS_PORT MONGO_PORT RABBIT_PORT RABBIT_MANAGEMENT_PORT RABBIT_DIST_PORT
	export RABBIT_NODES RABBIT_QUEUE RABBIT_QUEUE_TYPE
	# process-compose runs at least one replica of a process; of a role of none, `up` stops that one.
	export WORKER_PY_REPLICAS=$((WORKER_PY_COUNT > 0 ? WORKER_PY_COUNT : 1)) WORKER_GO_REPLICAS=$((WORKER_GO_COUNT > 0 ? WORKER_GO_COUNT : 1))
	export RABBIT_SINGLE_OFF=false RABBIT_CLUSTER_OFF=true RABBIT_BROKER=rabbitmq RABBIT_BROKER_CONDITION=process_healthy METRICS_OFF=false
	if ((RABBIT_NODES > 1)); then
		RABBIT_SINGLE_OFF=true RABBIT_CLUSTER_OFF=false RABBIT_BROKER=rabbitmq-cluster RABBIT_BROKER_CONDITION=process_completed_successfully
	fi
	metrics_on || METRICS_OFF=true
}

# --- steps process-compose.yaml runs ------------------------------------------------------------

# rabbitmqctl (or another CLI tool) for one node of the cluster, as the rabbitmq user with its cookie.
rq_cli() {
	local node=$1 tool=$2
	shift 2
	runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq "/usr/lib/rabbitmq/bin/$tool" -q -n "$node@localhost" "$@"
}

# rabbitmqctl against the stack's broker: Debian's node, or the cluster through rq1.
rabbit_ctl() {
	if ((RABBIT_NODES > 1)); then rq_cli rq1 rabbitmqctl "$@"; else rabbitmqctl -q "$@"; fi
}

# Joins rq2 and rq3 to rq1's cluster, once: a node that already lists rq1 is left as it is.
join_cluster() {
	local node
	for node in rq2 rq3; do
		rq_cli "$node" rabbitmqctl cluster_status --formatter json | grep -F '"rq1@localhost"' >/dev/null && continue
		say "joining $node to the cluster of rq1"
		rq_cli "$node" rabbitmqctl stop_app && rq_cli "$node" rabbitmqctl join_cluster rq1@localhost && rq_cli "$node" rabbitmqctl start_app ||
			die "$node could not join the cluster of rq1"
	done
}

# The task queue and its dead-letter queue where RabbitMQ has them with another type than
# RABBIT_QUEUE_TYPE; fails if one holds messages, which deleting it would lose.
mismatched_task_queues() {
	local listing name type messages
	listing=$(rabbit_ctl list_queues --no-table-headers name type messages) || die "rabbitmqctl list_queues failed"
	while read -r name type messages; do
		[[ ($name == "$RABBIT_QUEUE" || $name == "$RABBIT_QUEUE.dead") && $type != "$RABBIT_QUEUE_TYPE" ]] || continue
		[[ $messages == 0 ]] || die "$name is a $type queue holding ${messages:-an unknown number of} messages, which RABBIT_QUEUE_TYPE=$RABBIT_QUEUE_TYPE would delete with it: take them off first (the workers drain $RABBIT_QUEUE when the stack runs with RABBIT_QUEUE_TYPE=$type), or move them as docs/rabbitmq-cluster.md says"
		echo "$name"
	done <<<"$listing"
}

# A queue cannot change its type in place, and a node refuses to start on a task queue of another
# type than its RABBIT_QUEUE_TYPE. So that `up` can switch the type (a quorum queue on Debian's
# single node, say, and back), this step deletes the task queue and its dead-letter queue where
# they have the other type, before any node starts, and the nodes declare them anew; only while
# both are empty, so that a switch loses no message.
task_queue_type() {
	local mismatched name
	mismatched=$(mismatched_task_queues)
	[[ -n $mismatched ]] || return 0
	# No --if-empty: RabbitMQ 3.10 refuses it for quorum queues, and rabbitmqctl still exits 0.
	for name in $mismatched; do rabbit_ctl delete_queue "$name" >/dev/null || die "could not delete the empty queue $name"; done
	[[ -z $(mismatched_task_queues) ]] || die "RabbitMQ still has $(echo "$mismatched" | paste -sd' ') with a type other than $RABBIT_QUEUE_TYPE after deleting them"
	say "deleted the empty $(echo "$mismatched" | paste -sd' '), which were not $RABBIT_QUEUE_TYPE: the nodes declare them anew"
}

# A quorum queue's leader does its work; a client connected to another node reaches it through
# that node. The clients connect to rq1, the first of RABBIT_HOSTS, and the leader stays where it
# was declared or elected (after a failover, often elsewhere). RabbitMQ 3.10's CLI has no command
# that moves it to a given node; its transfer_leadership, which `rabbitmq-upgrade drain` uses, does.
lead() {
	local node=$1 result
	[[ $node == rq[1-3] ]] && ((RABBIT_NODES > 1)) || die "no RabbitMQ node '$node' here: RABBIT_NODES=$RABBIT_NODES"
	result=$(rq_cli "$node" rabbitmqctl eval "
		{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, <<\"$RABBIT_QUEUE\">>)),
		rabbit_quorum_queue:transfer_leadership(Q, '$node@localhost').") || die "could not ask $node to lead $RABBIT_QUEUE"
	[[ $result == "{migrated,$node@localhost}" || $result == "{not_migrated,already_leader}" ]] ||
		die "could not move the leader of $RABBIT_QUEUE to $node: $result"
	say "$RABBIT_QUEUE's leader is on $node"
}

# --- commands ---------------------------------------------------------------------------------

# The fixed ports of what the declaration starts, each free or already the stack's.
check_ports_free() {
	local port ports=("$NGINX_PORT" "$MONGO_PORT" "$FLASK_PORT" "$GO_PORT")
	if ((RABBIT_NODES > 1)); then ports+=("$RABBIT_PORT" $((RABBIT_PORT + 1)) $((RABBIT_PORT + 2))); else ports+=("$RABBIT_PORT"); fi
	if metrics_on; then ports+=("$PROMETHEUS_PORT"); fi
	for port in "${ports[@]}"; do
		port_open "$port" && die "port $port is taken by another process (Debian's rabbitmq-server, nginx or prometheus service? \`service <name> stop\`); stop it first"
	done
	return 0
}

up() {
	local started step
	started=$(now)
	mkdir -p "$LOGS" "$RUN"
	step=$(now); install_packages; build_tools; say "packages and tools ready ($(since "$step")s)"
	if supervised; then
		[[ $RUNNING_RABBIT_NODES == "$RABBIT_NODES" && $RUNNING_QUEUE_TYPE == "$RABBIT_QUEUE_TYPE" ]] ||
			die "the stack runs with RABBIT_NODES=$RUNNING_RABBIT_NODES and RABBIT_QUEUE_TYPE=$RUNNING_QUEUE_TYPE; to switch, stop it (stack.sh down) and bring it up again"
	fi
	write_rabbitmq_files
	write_nginx_config
	if metrics_on; then write_prometheus_config; fi
	write_node_env
	export_settings
	if supervised; then
		nginx -p "$STACK/nginx/" -e "$LOGS/nginx.log" -c nginx.conf -s reload # picks up template changes
	else
		check_ports_free
		say "starting the declared stack (process-compose.yaml; log: .stack/logs/process-compose.log)"
		rm -f "$PC_SOCKET_PATH"
		# --ordered-shutdown: `down` stops the nodes before what they depend on, so that they store
		# and ack their in-flight work first.
		(cd "$ROOT" && "$PROCESS_COMPOSE" up --detached --keep-project --ordered-shutdown --disable-dotenv --use-uds \
			--config process-compose.yaml --log-file "$LOGS/process-compose.log" >"$LOGS/process-compose.out" 2>&1) ||
			die "process-compose did not start" "$LOGS/process-compose.out"
	fi
	control up "$TIMEOUT" "$WORKER_PY_COUNT" "$WORKER_GO_COUNT"
	write_stack_env
	say "stack up in $(since "$started")s: http://127.0.0.1:$NGINX_PORT/flask/ /go/ /rabbitmq/ (guest/guest)"
	if metrics_on; then
		say "Prometheus: http://127.0.0.1:$PROMETHEUS_PORT/ (scrapes $(nodes | wc -l) nodes every 5 s)"
	else
		say "metrics off (METRICS_BASE_PORT=0): no node serves metrics, no Prometheus"
	fi
	say "watch it: $PROCESS_COMPOSE attach -u $PC_SOCKET_PATH"
}

down() {
	local started
	started=$(now)
	rm -f "$STACK/stack.env"
	if supervised; then
		# Each process gets its graceful stop: the nodes finish their in-flight work first.
		"$PROCESS_COMPOSE" down >/dev/null 2>&1 || true
		while supervised; do sleep 0.2; done
	fi
	rm -f "$PC_SOCKET_PATH"
	# RabbitMQ started Erlang's port mapper daemon; it goes too unless another node uses it.
	if ! epmd -names 2>/dev/null | grep "^name " >/dev/null; then epmd -kill >/dev/null 2>&1 || true; fi
	say "stack down in $(since "$started")s"
}

# `scale <role> N` is `up` with that role's count.
scale() {
	local role=${1:-} count=${2:-}
	[[ $count =~ ^[0-9]+$ ]] || die "usage: stack.sh scale worker-py|worker-go N"
	case $role in
		worker-py) WORKER_PY_COUNT=$count ;;
		worker-go) WORKER_GO_COUNT=$count ;;
		*) die "scale which role? worker-py or worker-go, got '$role'" ;;
	esac
	supervised || die "the stack is down: WORKER_PY_COUNT=$WORKER_PY_COUNT WORKER_GO_COUNT=$WORKER_GO_COUNT stack.sh up"
	up
}

logs() {
	local follow=() files=()
	if [[ ${1:-} == -f ]]; then follow=(-F); shift; fi
	if [[ -n ${1:-} ]]; then
		mapfile -t files < <(control log-files "$1")
	else
		files=("$LOGS"/*.log)
		if ((RABBIT_NODES > 1)); then files+=("$STACK"/rabbitmq/rq*/log/*.log); else files+=(/var/log/rabbitmq/rabbit@*.log); fi
	fi
	tail -n 50 "${follow[@]}" "${files[@]}"
}

case ${1:-} in
	up | down) "$1" ;;
	scale) scale "${2:-}" "${3:-}" ;;
	logs) shift; logs "$@" ;;
	lead) lead "${2:-}" ;;
	status | kill | start | restart) control "$@" ;;
	# Steps and shutdown commands of process-compose.yaml.
	join-cluster) join_cluster ;;
	task-queue-type) task_queue_type ;;
	rabbitmq-cli) shift; rq_cli "$@" ;;
	*)
		echo "usage: $0 up|down|status | logs [-f] [process] | restart|kill|start <process> | scale <role> <N> | lead <rqN>" >&2
		exit 2
		;;
esac
