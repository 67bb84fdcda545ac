#!/usr/bin/env bash
# The whole Notes & Tasks cluster on one machine, without Docker: RabbitMQ, FerretDB (MongoDB
# wire protocol on SQLite), Nginx, one Node process per Moleculer node (each serving its metrics on
# a port of its own) and Prometheus scraping them. State, pid files and logs live in .stack/ (git-ignored).
#
#   scripts/stack.sh up              install what is missing, start what is down, wait until ready
#   scripts/stack.sh down            stop everything `up` started
#   scripts/stack.sh status          each component up or down (exit 1 if any is down)
#   scripts/stack.sh logs [-f] [x]   last lines of every log, or of one component (-f: follow)
#   scripts/stack.sh restart <x>     restart rabbitmq (or rq1..rq3), ferretdb, nginx, prometheus or one node (by id) and wait until ready
#   scripts/stack.sh kill <node>     SIGKILL one node, RabbitMQ node rqN or ferretdb, as a crash would (the fault and security tests use it)
#   scripts/stack.sh start <node>    start one node that is down, from the current build, and wait until ready
#   scripts/stack.sh lead <rqN>      move the leader of the quorum task queue to RabbitMQ node rqN (RABBIT_NODES=3)
#
# Settings (environment): NGINX_PORT (8080), FLASK_PORT (5001), GO_PORT (5002), WORKER_PY_COUNT (1),
# WORKER_GO_COUNT (1), NAMESPACE (notes-tasks), DB_NAME (mydb), RABBIT_QUEUE (task_queue), LOG_LEVEL (info),
# MAX_BODY_BYTES (16384), PROMETHEUS_PORT (9090), METRICS_BASE_PORT (3030; a node's metrics port is
# base + 1 for api-flask-1, + 2 for api-go-1, + 100 + n for worker-py-n, + 200 + n for worker-go-n;
# 0 runs the nodes without metrics and no Prometheus, as the stack ran before: Moleculer's own
# per-call metrics cost a gateway about 60 CPU-ms per 1,000 tasks, see the README's benchmark),
# STACK_TIMEOUT (seconds each component may take to come up, 60), NODE_FLAGS (extra flags for each
# node's `node`, which NODE_OPTIONS refuses, e.g. `--cpu-prof --cpu-prof-dir=/tmp/profiles`: each
# node writes its CPU profile when it stops),
# RABBIT_NODES (1: Debian's own RabbitMQ node; 3: a cluster of three nodes rq1..rq3@localhost of our
# own, data in .stack/rabbitmq; `restart`, `kill` and `start` take rq1..rq3),
# RABBIT_QUEUE_TYPE (classic on one node, quorum on three; `up` with another type than the task
# queue has deletes the queue and its dead-letter queue while both are empty, and refuses otherwise),
# and the edge's settings of Nginx, as .env describes them (docs/security.md): RABBITMQ_UI_ALLOW
# (127.0.0.1,::1), NGINX_POST_RATE (20), NGINX_POST_BURST (40), NGINX_POST_CONCURRENCY (10),
# NGINX_LIMIT_EXEMPT (127.0.0.1,::1), NGINX_CLIENT_TIMEOUT (10).
# Everything but Nginx listens on 127.0.0.1 only: the nodes (BIND_ADDRESS), Prometheus, FerretDB,
# and RabbitMQ with its management, Erlang distribution and epmd (rabbitmq/local.conf).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=$ROOT/.stack
LOGS=$STACK/logs
RUN=$STACK/run
NODE=$ROOT/node_modules/.bin/node
# pid_of recognises the processes by these paths, in their command lines before and after exec.
FERRETDB=$STACK/bin/ferretdb
NGINX_CONF=$STACK/nginx/nginx.conf
PROMETHEUS_CONF=$STACK/prometheus/prometheus.yml

NGINX_PORT=${NGINX_PORT:-8080}
FLASK_PORT=${FLASK_PORT:-5001}
GO_PORT=${GO_PORT:-5002}
# One worker per role: on a 2-core machine more workers split the stream into smaller store
# batches and cost more CPU per task, for no more throughput (see the README's benchmark).
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
NGINX_LIMIT_EXEMPT=${NGINX_LIMIT_EXEMPT-127.0.0.1,::1}
NGINX_CLIENT_TIMEOUT=${NGINX_CLIENT_TIMEOUT:-10}
# Every listener of our RabbitMQ on loopback: AMQP, management, Erlang distribution (the files)
# and epmd, which the node starts (the variable).
RABBIT_LOOPBACK=(ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_ADVANCED_CONFIG_FILE="$ROOT/rabbitmq/local-advanced.config")
# A setting of the running stack, as `up` wrote it to stack.env; empty when the stack is down.
running_setting() { if [[ -f $STACK/stack.env ]]; then sed -n "s/^$1=//p" "$STACK/stack.env"; fi; }
# Unset, the running stack's settings apply: `status`, `kill rq2`, `restart api-go-1` etc. need no
# RABBIT_NODES or RABBIT_QUEUE_TYPE again, and a restarted node declares the queue as the others did.
RUNNING_RABBIT_NODES=$(running_setting RABBIT_NODES)
RUNNING_QUEUE_TYPE=$(running_setting RABBIT_QUEUE_TYPE)
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
RABBIT_CLUSTER=$STACK/rabbitmq
if ((RABBIT_NODES > 1)); then
	# The cluster's node i listens on RABBIT_PORT + i - 1, its management on RABBIT_MANAGEMENT_PORT
	# + i - 1, Erlang distribution on RABBIT_DIST_PORT + i - 1: ports of their own, beside those
	# of Debian's node, which apt may have started as a service.
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

as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

now() { date +%s.%N; }
since() { awk -v from="$1" -v to="$(now)" 'BEGIN { printf "%.1f", to - from }'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A pid file names a live process only if that process still runs the expected command:
# after a reboot the recorded pid may belong to something else, which `down` must not kill.
pid_of() {
	local file=$RUN/$1.pid pid state
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	state=$(ps -o stat= -p "$pid") || return 1
	[[ $state != Z* ]] && ps -o args= -p "$pid" | grep -qF -- "$2" || return 1
	echo "$pid"
}

# await <what> <log> <pid name> <pattern> <check...>: polls the check until it passes; fails
# at once when the process has died, or after TIMEOUT seconds, showing the log either way.
await() {
	local what=$1 log=$2 name=$3 pattern=$4 deadline=$((SECONDS + TIMEOUT))
	shift 4
	until "$@"; do
		[[ $name == - ]] || pid_of "$name" "$pattern" >/dev/null || die "$what exited while starting" "$log"
		((SECONDS < deadline)) || die "$what did not come up within ${TIMEOUT}s" "$log"
		sleep 0.25
	done
}

# Starts a command in its own session (so that it outlives this script and the terminal)
# with its output in a log, and records its pid. The previous run's log stays as <log>.1.
spawn() {
	local name=$1 log=$2
	shift 2
	if [[ -f $log ]]; then mv "$log" "$log.1"; fi
	setsid "$@" >"$log" 2>&1 </dev/null &
	echo $! >"$RUN/$name.pid"
}

# Stops a recorded process with SIGTERM, then SIGKILL if it is still there after `grace` seconds.
stop_process() {
	local name=$1 pattern=$2 grace=${3:-15} pid deadline
	pid=$(pid_of "$name" "$pattern") || { rm -f "$RUN/$name.pid"; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + grace))
	while pid_of "$name" "$pattern" >/dev/null; do
		if ((SECONDS >= deadline)); then
			say "$name did not stop within ${grace}s: killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		sleep 0.2
	done
	rm -f "$RUN/$name.pid"
}

nodes() {
	local i
	printf "%s\n" api-flask-1 api-go-1
	for ((i = 1; i <= WORKER_PY_COUNT; i++)); do echo "worker-py-$i"; done
	for ((i = 1; i <= WORKER_GO_COUNT; i++)); do echo "worker-go-$i"; done
}

# A node's metrics port follows from its id alone, so that it stays the same whatever the
# worker counts, and a restarted or added node takes the port Prometheus already scrapes.
metrics_on() { ((METRICS_BASE_PORT > 0)); }

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

# --- packages ---------------------------------------------------------------------------------

install_packages() {
	local missing=() package
	for package in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
	done
	((${#missing[@]} > 0)) || return 0
	say "installing Debian packages: ${missing[*]} (apt-get; takes a few minutes the first time)"
	as_root apt-get update -qq >"$LOGS/apt.log" 2>&1 || die "apt-get update failed" "$LOGS/apt.log"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$LOGS/apt.log" 2>&1 ||
		die "apt-get install ${missing[*]} failed" "$LOGS/apt.log"
}

# --- RabbitMQ ---------------------------------------------------------------------------------

rabbitmq_log() { echo "/var/log/rabbitmq/rabbit@$(hostname -s).log"; }
rabbitmq_registered() { epmd -names 2>/dev/null | grep -q "^name rabbit "; }

# RabbitMQ's largest message body (max_message_size), in the file docker compose mounts too: the
# config file of Debian's node when we start it, appended to the cluster nodes' config.
RABBIT_LIMITS=$ROOT/rabbitmq/limits.conf
# A Debian node we did not start gets it at run time, for the channels opened from then on.
limit_rabbitmq_messages() {
	as_root rabbitmqctl -q eval "application:set_env(rabbit, max_message_size, $(sed -n 's/^max_message_size *= *//p' "$RABBIT_LIMITS"))." >/dev/null ||
		die "could not set RabbitMQ's max_message_size" "$(rabbitmq_log)"
}

# Debian's own node (the rabbitmq user, /var/lib/rabbitmq). If it already runs (e.g. apt started
# the system service), it is used as it is and `down` leaves it running.
start_rabbitmq() {
	if port_open "$RABBIT_PORT"; then
		if [[ ! -f $RUN/rabbitmq.ours ]]; then
			say "RabbitMQ already runs (not started by this script): using it"
			as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null
			limit_rabbitmq_messages
		fi
	else
		say "starting RabbitMQ with the management plugin"
		as_root rabbitmq-plugins -q enable --offline rabbitmq_management >/dev/null
		as_root env "${RABBIT_LOOPBACK[@]}" RABBITMQ_CONFIG_FILE="$ROOT/rabbitmq/local.conf" rabbitmq-server -detached >"$LOGS/rabbitmq.log" 2>&1 ||
			die "rabbitmq-server failed to start" "$LOGS/rabbitmq.log"
		touch "$RUN/rabbitmq.ours"
		# await_startup gives up at once on a node that has not registered with epmd yet.
		await "RabbitMQ node" "$LOGS/rabbitmq.log" - - rabbitmq_registered
		as_root rabbitmqctl -q await_startup --timeout "$TIMEOUT" >>"$LOGS/rabbitmq.log" 2>&1 ||
			die "RabbitMQ did not start within ${TIMEOUT}s" "$(rabbitmq_log)"
		limit_rabbitmq_messages
	fi
	await "RabbitMQ management (port $RABBIT_MANAGEMENT_PORT)" "$(rabbitmq_log)" - - port_open "$RABBIT_MANAGEMENT_PORT"
}

# A full restart of our own node (connections dropped, queues recovered from disk). A RabbitMQ
# run by a service manager keeps its Erlang node: only the broker application inside restarts.
restart_rabbitmq() {
	if [[ -f $RUN/rabbitmq.ours ]]; then
		if port_open "$RABBIT_PORT"; then
			as_root rabbitmqctl -q shutdown >/dev/null 2>&1 || die "rabbitmqctl shutdown failed" "$(rabbitmq_log)"
		fi
		start_rabbitmq
	else
		say "RabbitMQ was not started by this script: restarting its broker application only"
		as_root rabbitmqctl -q stop_app >/dev/null || die "rabbitmqctl stop_app failed" "$(rabbitmq_log)"
		as_root rabbitmqctl -q start_app >/dev/null || die "rabbitmqctl start_app failed" "$(rabbitmq_log)"
		await "RabbitMQ management (port $RABBIT_MANAGEMENT_PORT)" "$(rabbitmq_log)" - - port_open "$RABBIT_MANAGEMENT_PORT"
		limit_rabbitmq_messages
	fi
}

stop_rabbitmq() {
	[[ -f $RUN/rabbitmq.ours ]] || return 0
	if port_open "$RABBIT_PORT"; then as_root rabbitmqctl -q shutdown >/dev/null 2>&1 || true; fi
	# rabbitmq-server started Erlang's port mapper daemon; it goes too unless another node uses it.
	if ! epmd -names 2>/dev/null | grep -q "^name "; then epmd -kill >/dev/null 2>&1 || true; fi
	rm -f "$RUN/rabbitmq.ours"
}

# --- RabbitMQ cluster (RABBIT_NODES=3) ----------------------------------------------------------

# Three nodes of Debian's rabbitmq-server beside each other, run as the rabbitmq user (whose Erlang
# cookie they share), each with its own name, ports, data, logs, config and plugins under
# .stack/rabbitmq/rqN. Node 2 and 3 join rq1's cluster on their first start; the data stays across
# `down` and `up`, and a restarted node finds its cluster again by itself.
rq_nodes() { seq 1 "$RABBIT_NODES" | sed 's/^/rq/'; }
rq_index() { echo "${1#rq}"; }
rq_name() { echo "$1@localhost"; }
rq_port() { echo $((RABBIT_PORT + $(rq_index "$1") - 1)); }
rq_dir() { echo "$RABBIT_CLUSTER/$1"; }
rq_log() { echo "$(rq_dir "$1")/log/$(rq_name "$1").log"; }
# The beam process's pid, from the pid file RabbitMQ writes, if it still runs that node.
rq_pid() {
	local file pid
	file=$(rq_dir "$1")/pid
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	# The node name is not on beam's command line; it comes from the environment it was started with.
	as_root cat "/proc/$pid/environ" 2>/dev/null | tr '\0' '\n' | grep -qxF -- "RABBITMQ_NODENAME=$(rq_name "$1")" || return 1
	echo "$pid"
}
rq_running() { rq_pid "$1" >/dev/null; }
rq_management_port() { echo $((RABBIT_MANAGEMENT_PORT + $(rq_index "$1") - 1)); }
rabbit_management_ports() { local node; for node in $(rq_nodes); do rq_management_port "$node"; done | paste -sd,; }

# RABBIT_HOSTS of the cluster's clients; empty with Debian's single node (RABBIT_HOST applies).
rabbit_hosts() {
	local node
	((RABBIT_NODES > 1)) || return 0
	for node in $(rq_nodes); do printf '127.0.0.1:%s\n' "$(rq_port "$node")"; done | paste -sd,
}

# rabbitmqctl (or another CLI tool) for one node, as the rabbitmq user with its cookie.
rq_cli() {
	local tool=$1 node=$2
	shift 2
	as_root runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq "/usr/lib/rabbitmq/bin/$tool" -q -n "$(rq_name "$node")" "$@"
}

write_rq_files() {
	local node=$1 dir
	dir=$(rq_dir "$node")
	mkdir -p "$dir/mnesia" "$dir/log"
	cat >"$dir/rabbitmq.conf" <<-EOF
		# Written by scripts/stack.sh: node $(rq_name "$node") of the local 3-node cluster.
		management.tcp.ip = 127.0.0.1
		management.tcp.port = $(rq_management_port "$node")
	EOF
	cat "$RABBIT_LIMITS" >>"$dir/rabbitmq.conf"
	echo "[rabbitmq_management]." >"$dir/enabled_plugins"
	as_root chown -R rabbitmq:rabbitmq "$dir"
}

start_rq_node() {
	local node=$1 dir index
	if rq_pid "$node" >/dev/null; then return 0; fi
	port_open "$(rq_port "$node")" && die "port $(rq_port "$node") is taken by another process; stop it first"
	write_rq_files "$node"
	dir=$(rq_dir "$node")
	index=$(rq_index "$node")
	as_root runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq "${RABBIT_LOOPBACK[@]}" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODENAME="$(rq_name "$node")" RABBITMQ_NODE_PORT="$(rq_port "$node")" \
		RABBITMQ_DIST_PORT=$((RABBIT_DIST_PORT + index - 1)) \
		RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/pid" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
		/usr/lib/rabbitmq/bin/rabbitmq-server -detached >"$LOGS/$node.log" 2>&1 ||
		die "RabbitMQ node $node failed to start" "$LOGS/$node.log"
}

rq_booted() {
	await "RabbitMQ node $1" "$LOGS/$1.log" - - rq_running "$1"
	rq_cli rabbitmqctl "$1" await_startup --timeout "$TIMEOUT" >>"$LOGS/$1.log" 2>&1
}

await_rq_node() {
	local node=$1
	if ! rq_booted "$node"; then
		# RabbitMQ 3.10 stops a node at boot when it syncs its feature flags with a peer that is
		# still booting itself (incompatible_feature_flags, {badmap,undefined}); started again
		# once that peer is up, it boots.
		rq_running "$node" && die "RabbitMQ node $node did not start within ${TIMEOUT}s" "$(rq_log "$node")"
		say "RabbitMQ node $node stopped while booting: starting it again"
		start_rq_node "$node"
		rq_booted "$node" || die "RabbitMQ node $node did not start within ${TIMEOUT}s" "$(rq_log "$node")"
	fi
	await "RabbitMQ node $node (port $(rq_port "$node"))" "$(rq_log "$node")" - - port_open "$(rq_port "$node")"
}

# Joins rq2 and rq3 to rq1's cluster, once: a node that already lists rq1 is left as it is.
join_rq_cluster() {
	local node
	for node in $(rq_nodes); do
		[[ $node == rq1 ]] && continue
		rq_cli rabbitmqctl "$node" cluster_status --formatter json | grep -qF "\"$(rq_name rq1)\"" && continue
		say "joining $node to the cluster of rq1"
		{
			rq_cli rabbitmqctl "$node" stop_app &&
				rq_cli rabbitmqctl "$node" join_cluster "$(rq_name rq1)" &&
				rq_cli rabbitmqctl "$node" start_app
		} >>"$LOGS/$node.log" 2>&1 || die "$node could not join the cluster of rq1" "$(rq_log "$node")"
	done
}

start_rabbitmq_cluster() {
	local node
	# In parallel: a node that stopped after its peers waits for them to come back before it starts.
	for node in $(rq_nodes); do start_rq_node "$node"; done
	for node in $(rq_nodes); do await_rq_node "$node"; done
	join_rq_cluster
	await "RabbitMQ management (port $RABBIT_MANAGEMENT_PORT)" "$(rq_log rq1)" - - port_open "$RABBIT_MANAGEMENT_PORT"
}

# A graceful stop of one node; its clients fail over to the others.
stop_rq_node() {
	local node=$1
	rq_pid "$node" >/dev/null || return 0
	rq_cli rabbitmqctl "$node" shutdown >/dev/null 2>&1 || true
	while rq_pid "$node" >/dev/null; do sleep 0.2; done
}

# As an operator restarts a node of the cluster: only once every quorum queue would keep a majority
# without it, so that the restart never takes a queue away.
restart_rq_node() {
	local node=$1
	if rq_pid "$node" >/dev/null; then
		rq_cli rabbitmq-upgrade "$node" await_online_quorum_plus_one --timeout "$TIMEOUT" >>"$LOGS/$node.log" 2>&1 ||
			die "some quorum queue would lose its majority without $node" "$LOGS/$node.log"
	fi
	stop_rq_node "$node"
	start_rq_node "$node"
	await_rq_node "$node"
}

# SIGKILL leaves the node no time for anything: its connections drop, its queue replicas fall behind.
kill_rq_node() {
	local node=$1 pid
	pid=$(rq_pid "$node") || die "$node is not running"
	kill -KILL "$pid"
	while rq_pid "$node" >/dev/null; do sleep 0.05; done
	say "$node killed (SIGKILL, pid $pid)"
}

# A quorum queue's leader does its work; a client connected to another node reaches it through
# that node. The clients connect to rq1, the first of RABBIT_HOSTS, and the leader stays where it
# was declared or elected (after a failover, often elsewhere). RabbitMQ 3.10's CLI has no command
# that moves it to a given node; its transfer_leadership, which `rabbitmq-upgrade drain` uses, does.
lead_rq_node() {
	local node=$1 result
	result=$(rq_cli rabbitmqctl "$node" eval "
		{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, <<\"$RABBIT_QUEUE\">>)),
		rabbit_quorum_queue:transfer_leadership(Q, '$(rq_name "$node")').") || die "could not ask $node to lead $RABBIT_QUEUE"
	[[ $result == "{migrated,$(rq_name "$node")}" || $result == "{not_migrated,already_leader}" ]] ||
		die "could not move the leader of $RABBIT_QUEUE to $node: $result"
	say "$RABBIT_QUEUE's leader is on $node"
}

stop_rabbitmq_cluster() {
	local node
	for node in $(rq_nodes); do stop_rq_node "$node" & done
	wait
	# The nodes started Erlang's port mapper daemon; it goes too unless another node uses it.
	if ! epmd -names 2>/dev/null | grep -q "^name "; then epmd -kill >/dev/null 2>&1 || true; fi
}

# --- the task queue's type -------------------------------------------------------------------

# rabbitmqctl against the stack's broker: Debian's node, or the cluster through rq1.
rabbit_ctl() {
	if ((RABBIT_NODES > 1)); then rq_cli rabbitmqctl rq1 "$@"; else as_root rabbitmqctl -q "$@"; fi
}

# The task queue and its dead-letter queue where RabbitMQ has them with another type than
# RABBIT_QUEUE_TYPE; fails if one holds messages, which deleting it would lose.
mismatched_task_queues() {
	local listing name type messages
	listing=$(rabbit_ctl list_queues --no-table-headers name type messages) || die "rabbitmqctl list_queues failed"
	while read -r name type messages; do
		[[ ($name == "$RABBIT_QUEUE" || $name == "$RABBIT_QUEUE.dead") && $type != "$RABBIT_QUEUE_TYPE" ]] || continue
		[[ $messages == 0 ]] || die "$name is a $type queue holding ${messages:-an unknown number of} messages, which RABBIT_QUEUE_TYPE=$RABBIT_QUEUE_TYPE would delete with it: take them off first (the workers drain $RABBIT_QUEUE when the stack runs with RABBIT_QUEUE_TYPE=$type), or move them as the README's \"Moving task_queue from classic to quorum\" says"
		echo "$name"
	done <<<"$listing"
}

# A queue cannot change its type in place, and a node refuses to start on a task queue of another
# type than its RABBIT_QUEUE_TYPE. So that `up` can switch the type (a quorum queue on Debian's
# single node, say, and back), it deletes the task queue and its dead-letter queue where they have
# the other type, and the nodes declare them anew; only while no node uses them and both are
# empty, so that a switch loses no message.
use_task_queue_type() {
	local mismatched name
	if [[ -n $(running_nodes) ]]; then
		[[ $RUNNING_QUEUE_TYPE == "$RABBIT_QUEUE_TYPE" ]] ||
			die "the stack's nodes run with RABBIT_QUEUE_TYPE=$RUNNING_QUEUE_TYPE; to switch to $RABBIT_QUEUE_TYPE, stop the stack (stack.sh down) and bring it up again"
		return 0
	fi
	mismatched=$(mismatched_task_queues)
	[[ -n $mismatched ]] || return 0
	# No --if-empty: RabbitMQ 3.10 refuses it for quorum queues, and rabbitmqctl still exits 0.
	for name in $mismatched; do rabbit_ctl delete_queue "$name" >/dev/null || die "could not delete the empty queue $name"; done
	[[ -z $(mismatched_task_queues) ]] || die "RabbitMQ still has $(echo "$mismatched" | paste -sd' ') with a type other than $RABBIT_QUEUE_TYPE after deleting them"
	say "deleted the empty $(echo "$mismatched" | paste -sd' '), which were not $RABBIT_QUEUE_TYPE: the nodes declare them anew"
}

# --- FerretDB ---------------------------------------------------------------------------------

# Builds tools/ferretdb once; the binary is rebuilt only when its sources (and patches) change.
ferretdb_binary() {
	local bin=$FERRETDB sources hash started
	sources=("$ROOT"/tools/ferretdb/{*.go,go.mod,go.sum,build.sh,patches/*.patch})
	hash=$(cat "${sources[@]}" | sha256sum | cut -d' ' -f1)
	if [[ -x $bin && $(cat "$bin.sha256" 2>/dev/null) == "$hash" ]]; then return 0; fi
	command -v go >/dev/null || die "Go is needed to build tools/ferretdb once: install Go >= 1.24 (https://go.dev/dl/)"
	say "building FerretDB from tools/ferretdb (once, ~1-2 min cold; log: .stack/logs/ferretdb-build.log)"
	started=$(now)
	mkdir -p "$STACK/bin"
	"$ROOT/tools/ferretdb/build.sh" "$bin.tmp" >"$LOGS/ferretdb-build.log" 2>&1 ||
		die "building FerretDB failed" "$LOGS/ferretdb-build.log"
	mv "$bin.tmp" "$bin"
	echo "$hash" >"$bin.sha256"
	say "FerretDB built in $(since "$started")s"
}

start_ferretdb() {
	ferretdb_binary
	if pid_of ferretdb "$FERRETDB" >/dev/null; then return 0; fi
	port_open "$MONGO_PORT" && die "port $MONGO_PORT is taken by another process (a MongoDB?); stop it first"
	say "starting FerretDB on 127.0.0.1:$MONGO_PORT (data in .stack/ferretdb)"
	spawn ferretdb "$LOGS/ferretdb.log" "$FERRETDB" -listen "127.0.0.1:$MONGO_PORT" -data "$STACK/ferretdb"
	await FerretDB "$LOGS/ferretdb.log" ferretdb "$FERRETDB" port_open "$MONGO_PORT"
}

# --- Nginx ------------------------------------------------------------------------------------

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
		NGINX_POST_CONCURRENCY=$NGINX_POST_CONCURRENCY NGINX_LIMIT_EXEMPT=$NGINX_LIMIT_EXEMPT NGINX_CLIENT_TIMEOUT=$NGINX_CLIENT_TIMEOUT \
		envsubst '${NGINX_PORT} ${FLASK_UPSTREAM} ${GO_UPSTREAM} ${RABBITMQ_MANAGEMENT_UPSTREAM} ${NGINX_RESOLVER} ${UPSTREAM_RESOLVE} ${MAX_BODY_BYTES} ${NGINX_ACCESS_LOG} ${RABBITMQ_UI_ALLOW} ${NGINX_POST_RATE} ${NGINX_POST_BURST} ${NGINX_POST_CONCURRENCY} ${NGINX_LIMIT_EXEMPT} ${NGINX_CLIENT_TIMEOUT}' \
		<"$ROOT/nginx/templates/default.conf.template" >"$dir/default.conf"
	cat >"$NGINX_CONF" <<-EOF
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
	EOF
}

NGINX=(nginx -p "$STACK/nginx/" -e "$LOGS/nginx.log" -c "$NGINX_CONF")

start_nginx() {
	write_nginx_config
	"${NGINX[@]}" -t -q 2>>"$LOGS/nginx.log" || die "the rendered Nginx config is invalid (.stack/nginx/default.conf)" "$LOGS/nginx.log"
	if pid_of nginx "$NGINX_CONF" >/dev/null; then
		"${NGINX[@]}" -s reload # picks up template changes
		return 0
	fi
	port_open "$NGINX_PORT" && die "port $NGINX_PORT is taken by another process; set NGINX_PORT"
	say "starting Nginx on port $NGINX_PORT"
	spawn nginx "$LOGS/nginx.log" "${NGINX[@]}" -g "daemon off;"
	await Nginx "$LOGS/nginx.log" nginx "$NGINX_CONF" port_open "$NGINX_PORT"
}

# --- Prometheus -------------------------------------------------------------------------------

# Every node this stack runs, by its metrics port. Prometheus re-reads the targets file by itself
# when `up` rewrites it for other worker counts; nodes stopped since then show as down.
write_prometheus_targets() {
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
}

write_prometheus_config() {
	cat >"$PROMETHEUS_CONF" <<-EOF
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
	EOF
}

prometheus_ready() { curl -fs -o /dev/null "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"; }

start_prometheus() {
	write_prometheus_targets
	write_prometheus_config
	if pid_of prometheus "$PROMETHEUS_CONF" >/dev/null; then return 0; fi
	port_open "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is taken by another process; set PROMETHEUS_PORT"
	say "starting Prometheus on port $PROMETHEUS_PORT (data in .stack/prometheus/data)"
	# One day of samples is plenty for a development stack and keeps .stack/ small.
	spawn prometheus "$LOGS/prometheus.log" prometheus --config.file="$PROMETHEUS_CONF" \
		--storage.tsdb.path="$STACK/prometheus/data" --storage.tsdb.retention.time=1d \
		--web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
	await Prometheus "$LOGS/prometheus.log" prometheus "$PROMETHEUS_CONF" prometheus_ready
}

# --- Moleculer nodes --------------------------------------------------------------------------

start_node() {
	local node=$1 role=${1%-*}
	case $role in
		api-flask) port_open "$FLASK_PORT" && die "port $FLASK_PORT (FLASK_PORT) is taken by another process" ;;
		api-go) port_open "$GO_PORT" && die "port $GO_PORT (GO_PORT) is taken by another process" ;;
	esac
	# Every node runs a `tasks` store beside its role, as in docker-compose, and the image's V8
	# settings: a smaller young generation and a capped old one keep its peak RSS down (see the Dockerfile).
	(cd "$ROOT" && spawn "$node" "$LOGS/$node.log" env NO_COLOR=1 \
		NODE_OPTIONS="${NODE_OPTIONS:---max-semi-space-size=8 --max-old-space-size=96}" SERVICEDIR=dist/services SERVICES="$role,tasks" NODE_ID="$node" NAMESPACE="$NAMESPACE" \
		RABBIT_HOST=127.0.0.1 RABBIT_PORT="$RABBIT_PORT" RABBIT_HOSTS="$(rabbit_hosts)" RABBIT_QUEUE="$RABBIT_QUEUE" RABBIT_QUEUE_TYPE="$RABBIT_QUEUE_TYPE" \
		MONGO_URI="mongodb://127.0.0.1:$MONGO_PORT/" DB_NAME="$DB_NAME" \
		FLASK_PORT="$FLASK_PORT" GO_PORT="$GO_PORT" BIND_ADDRESS=127.0.0.1 MAX_BODY_BYTES="$MAX_BODY_BYTES" LOG_LEVEL="$LOG_LEVEL" \
		METRICS_PORT="$(metrics_port "$node")" \
		"$NODE" ${NODE_FLAGS:-} node_modules/moleculer/bin/moleculer-runner.js --config dist/moleculer.config.js)
}

node_ready() {
	case ${1%-*} in
		api-flask) curl -fs -o /dev/null "http://127.0.0.1:$FLASK_PORT/health/ready" ;;
		api-go) curl -fs -o /dev/null "http://127.0.0.1:$GO_PORT/health/ready" ;;
		*) grep -q "ServiceBroker with .* started successfully" "$LOGS/$1.log" ;;
	esac && { ! metrics_on || curl -fs -o /dev/null "http://127.0.0.1:$(metrics_port "$1")/metrics"; }
}

start_cluster() {
	local node started missing=()
	for node in $(nodes); do pid_of "$node" moleculer-runner >/dev/null || missing+=("$node"); done
	if ((${#missing[@]} == 0)); then
		say "cluster nodes already run (stack.sh down, then up, restarts them on new code)"
		return 0
	fi
	started=$(now)
	say "building the cluster (npm run build)"
	rm -rf "$ROOT/dist"
	(cd "$ROOT" && npm run --silent build) >"$LOGS/build.log" 2>&1 || die "npm run build failed" "$LOGS/build.log"
	say "built in $(since "$started")s; starting nodes: ${missing[*]}"
	for node in "${missing[@]}"; do
		metrics_on && port_open "$(metrics_port "$node")" && die "port $(metrics_port "$node") (metrics of $node) is taken by another process; set METRICS_BASE_PORT"
		start_node "$node"
	done
	for node in $(nodes); do await "node $node" "$LOGS/$node.log" "$node" moleculer-runner node_ready "$node"; done
}

# Ids of the Moleculer nodes that run, whatever the worker counts say now.
running_nodes() {
	local file
	for file in "$RUN"/*-[0-9]*.pid; do
		if [[ -f $file ]] && pid_of "$(basename "$file" .pid)" moleculer-runner >/dev/null; then basename "$file" .pid; fi
	done
}

# Fails unless $1 is a node id of this stack.
known_node() {
	nodes | grep -qxF -- "$1" || die "unknown component '$1'; try one of: rabbitmq ferretdb nginx prometheus $(nodes | paste -sd' ')"
}

# Fails unless $1 is a RabbitMQ node of this stack's cluster.
known_rq_node() {
	rq_nodes | grep -qxF -- "$1" || die "no RabbitMQ node '$1' here: RABBIT_NODES=$RABBIT_NODES"
}

# Starts one node that is down from the build in dist/ (no rebuild: a restart stays fast).
start_one_node() {
	local node=$1
	known_node "$node"
	if pid_of "$node" moleculer-runner >/dev/null; then say "$node already runs"; return 0; fi
	[[ -f $ROOT/dist/moleculer.config.js ]] || die "no build in dist/: run stack.sh up first"
	start_node "$node"
	await "node $node" "$LOGS/$node.log" "$node" moleculer-runner node_ready "$node"
}

write_env() {
	cat >"$STACK/stack.env" <<-EOF
		# Written by scripts/stack.sh up: how clients (npm run repl, the e2e tests) reach the local stack.
		NAMESPACE=$NAMESPACE
		RABBIT_HOST=127.0.0.1
		RABBIT_PORT=$RABBIT_PORT
		RABBIT_HOSTS=$(rabbit_hosts)
		RABBIT_NODES=$RABBIT_NODES
		RABBIT_QUEUE=$RABBIT_QUEUE
		RABBIT_QUEUE_TYPE=$RABBIT_QUEUE_TYPE
		RABBITMQ_MANAGEMENT_PORT=$RABBIT_MANAGEMENT_PORT
		RABBITMQ_MANAGEMENT_PORTS=$(rabbit_management_ports)
		MONGO_URI=mongodb://127.0.0.1:$MONGO_PORT/
		DB_NAME=$DB_NAME
		NGINX_PORT=$NGINX_PORT
		FLASK_PORT=$FLASK_PORT
		GO_PORT=$GO_PORT
		MAX_BODY_BYTES=$MAX_BODY_BYTES
		RABBITMQ_UI_ALLOW="$RABBITMQ_UI_ALLOW"
		NGINX_POST_RATE=$NGINX_POST_RATE
		NGINX_POST_BURST=$NGINX_POST_BURST
		NGINX_POST_CONCURRENCY=$NGINX_POST_CONCURRENCY
		NGINX_LIMIT_EXEMPT="$NGINX_LIMIT_EXEMPT"
		NGINX_CLIENT_TIMEOUT=$NGINX_CLIENT_TIMEOUT
		STACK_NODES=$(nodes | paste -sd,)
		PROMETHEUS_PORT=$PROMETHEUS_PORT
		STACK_METRICS=$(for node in $(nodes); do echo "$node=127.0.0.1:$(metrics_port "$node")"; done | paste -sd,)
	EOF
}

# --- commands ---------------------------------------------------------------------------------

up() {
	local started step
	started=$(now)
	mkdir -p "$LOGS" "$RUN"
	step=$(now); install_packages; say "packages ready ($(since "$step")s)"
	step=$(now)
	if ((RABBIT_NODES > 1)); then start_rabbitmq_cluster; else start_rabbitmq; fi
	use_task_queue_type
	say "RabbitMQ up ($(since "$step")s)"
	step=$(now); start_ferretdb; say "FerretDB up ($(since "$step")s)"
	step=$(now); start_nginx; say "Nginx up ($(since "$step")s)"
	step=$(now); start_cluster; say "cluster nodes up ($(since "$step")s)"
	if metrics_on; then step=$(now); start_prometheus; say "Prometheus up ($(since "$step")s)"; fi
	write_env
	say "stack up in $(since "$started")s: http://127.0.0.1:$NGINX_PORT/flask/ /go/ /rabbitmq/ (guest/guest)"
	if metrics_on; then
		say "Prometheus: http://127.0.0.1:$PROMETHEUS_PORT/ (scrapes $(nodes | wc -l) nodes every 5 s)"
	else
		say "metrics off (METRICS_BASE_PORT=0): no node serves metrics, no Prometheus"
	fi
}

down() {
	local file started step
	started=$(now)
	mkdir -p "$RUN"
	rm -f "$STACK/stack.env"
	# The nodes stop in parallel: each finishes its in-flight work first (Moleculer's graceful stop).
	step=$(now)
	for file in "$RUN"/*-[0-9]*.pid; do
		[[ -f $file ]] && stop_process "$(basename "$file" .pid)" moleculer-runner 20 &
	done
	wait
	say "cluster nodes stopped ($(since "$step")s)"
	stop_process prometheus "$PROMETHEUS_CONF"
	stop_process nginx "$NGINX_CONF"
	stop_process ferretdb "$FERRETDB"
	step=$(now)
	# Whatever RABBIT_NODES says now: the cluster goes if it runs, Debian's node if we started it.
	RABBIT_NODES=3 stop_rabbitmq_cluster
	stop_rabbitmq
	say "Prometheus, Nginx, FerretDB and RabbitMQ stopped ($(since "$step")s)"
	say "stack down in $(since "$started")s"
}

restart() {
	local component=${1:-} started
	[[ -n $component ]] || die "restart what? one of: rabbitmq ferretdb nginx prometheus $(nodes | paste -sd' ')"
	started=$(now)
	mkdir -p "$LOGS" "$RUN"
	case $component in
		rabbitmq) restart_rabbitmq ;;
		rq[1-3]) known_rq_node "$component"; restart_rq_node "$component" ;;
		ferretdb) stop_process ferretdb "$FERRETDB"; start_ferretdb ;;
		nginx) stop_process nginx "$NGINX_CONF"; start_nginx ;;
		prometheus) stop_process prometheus "$PROMETHEUS_CONF"; start_prometheus ;;
		*)
			known_node "$component"
			stop_process "$component" moleculer-runner 20
			start_one_node "$component"
			;;
	esac
	say "$component restarted in $(since "$started")s"
}

start() {
	local node=${1:-} started
	[[ -n $node ]] || die "start which node? one of: $(nodes | paste -sd' ')"
	started=$(now)
	case $node in
		rq[1-3]) known_rq_node "$node"; start_rq_node "$node"; await_rq_node "$node" ;;
		*) start_one_node "$node" ;;
	esac
	say "$node up in $(since "$started")s"
}

# SIGKILL leaves no time for a graceful stop: the node's unacked deliveries go back to the queue.
kill_node() {
	local node=${1:-} pid
	[[ -n $node ]] || die "kill which node? one of: $(nodes | paste -sd' ')"
	if [[ $node == rq[1-3] ]]; then known_rq_node "$node"; kill_rq_node "$node"; return; fi
	if [[ $node == ferretdb ]]; then
		pid=$(pid_of ferretdb "$FERRETDB") || die "ferretdb is not running"
		kill -KILL "$pid"
		stop_process ferretdb "$FERRETDB"
		say "ferretdb killed (SIGKILL, pid $pid): the store is away until \`restart ferretdb\` or \`up\`"
		return
	fi
	known_node "$node"
	pid=$(pid_of "$node" moleculer-runner) || die "$node is not running"
	kill -KILL "$pid" 2>/dev/null || true
	while pid_of "$node" moleculer-runner >/dev/null; do sleep 0.05; done
	rm -f "$RUN/$node.pid"
	say "$node killed (SIGKILL, pid $pid)"
}

status() {
	local healthy=0 node pid
	row() { printf '%-12s %-5s %s\n' "$@"; }
	if ((RABBIT_NODES > 1)); then
		for node in $(rq_nodes); do
			if pid=$(rq_pid "$node"); then row "$node" up "pid $pid, amqp://127.0.0.1:$(rq_port "$node"), $(rq_name "$node")"; else row "$node" down; healthy=1; fi
		done
	elif port_open "$RABBIT_PORT"; then
		row rabbitmq up "amqp://127.0.0.1:$RABBIT_PORT, http://127.0.0.1:$RABBIT_MANAGEMENT_PORT/$([[ -f $RUN/rabbitmq.ours ]] || echo ' (not started by stack.sh)')"
	else
		row rabbitmq down; healthy=1
	fi
	if pid=$(pid_of ferretdb "$FERRETDB"); then row ferretdb up "pid $pid, mongodb://127.0.0.1:$MONGO_PORT/"; else row ferretdb down; healthy=1; fi
	if pid=$(pid_of nginx "$NGINX_CONF"); then row nginx up "pid $pid, http://127.0.0.1:$NGINX_PORT/"; else row nginx down; healthy=1; fi
	if pid=$(pid_of prometheus "$PROMETHEUS_CONF"); then row prometheus up "pid $pid, http://127.0.0.1:$PROMETHEUS_PORT/"
	elif metrics_on; then row prometheus down; healthy=1
	else row prometheus off "METRICS_BASE_PORT=0"; fi
	for node in $(nodes); do
		if pid=$(pid_of "$node" moleculer-runner); then row "$node" up "pid $pid$(metrics_on && echo ", metrics http://127.0.0.1:$(metrics_port "$node")/metrics")"; else row "$node" down; healthy=1; fi
	done
	return $healthy
}

logs() {
	local follow=() files=() name
	if [[ ${1:-} == -f ]]; then follow=(-F); shift; fi
	if [[ -n ${1:-} ]]; then
		name=$1
		case $name in
			rabbitmq) files=("$(rabbitmq_log)") ;;
			rq[1-3]) files=("$(rq_log "$name")") ;;
			*) files=("$LOGS/$name.log") ;;
		esac
		[[ -f ${files[0]} ]] || die "no log for '$name'; try one of: rabbitmq ferretdb nginx prometheus $(nodes | tr '\n' ' ')"
	else
		files=("$LOGS"/*.log)
		if ((RABBIT_NODES > 1)); then
			for name in $(rq_nodes); do [[ -f $(rq_log "$name") ]] && files+=("$(rq_log "$name")"); done
		elif [[ -f $(rabbitmq_log) ]]; then
			files+=("$(rabbitmq_log)")
		fi
	fi
	tail -n 50 "${follow[@]}" "${files[@]}"
}

case ${1:-} in
	up | down | status) "$1" ;;
	logs) shift; logs "$@" ;;
	restart | start) "$1" "${2:-}" ;;
	kill) kill_node "${2:-}" ;;
	lead) [[ -n ${2:-} ]] || die "lead on which node? one of: $(rq_nodes | paste -sd' ')"; known_rq_node "$2"; lead_rq_node "$2" ;;
	*)
		echo "usage: $0 up|down|status | logs [-f] [component] | restart <component> | kill <node> | start <node> | lead <rqN>" >&2
		exit 2
		;;
esac
