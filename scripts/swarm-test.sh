#!/usr/bin/env bash
# docker-stack.yml on a live three-engine Docker Swarm, on one machine (`npm run test:swarm`).
#
# Three dockerd, each in a network namespace of its own (nts-swarm-1..3, host names swarm-1..3)
# with one veth on a bridge that lives in a fourth namespace (nts-swarm-lan, SWARM_TEST_SUBNET,
# 192.168.250.0/24: .1 the bridge, .11-.13 the engines), so that nothing of it touches the host's
# network. swarm-1 is the manager and holds RabbitMQ, MongoDB, Nginx and Prometheus (node labels);
# swarm-2 and swarm-3 are workers. The images come from scripts/swarm-images.sh (the compose test's
# stand-ins and cache), loaded into each engine with `docker load` (there is no registry here) and
# kept in each engine's data root under .swarm/engines/ between runs.
#
# Then test/swarm/swarm.spec.ts runs inside nts-swarm-lan against the live swarm: tasks stored by
# workers on all three engines, the REPL on the attachable network, Prometheus's targets, scaling,
# a rolling update, a rollback, the loss of swarm-3 (its veth cut). At the end, pass or fail,
# `docker stack rm`, the engines stopped and the namespaces deleted, and a check that nothing is
# left: namespaces, mounts, processes. The last line totals the checks as "N passed, N failed".
#
# SWARM_TEST_HOST_LOCK: a lock file held (flock) while scripts/swarm-images.sh runs an engine in the
# host's network namespace, for machines where the compose test runs beside it.
set -euo pipefail

# shellcheck source=scripts/lib/test-run.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-run.sh"
OUT=$ROOT/.swarm
LOGS=$OUT/logs
# Short paths: unix sockets are limited to 108 bytes.
RUN=/run/nts-swarm
LAN=nts-swarm-lan
SUBNET=${SWARM_TEST_SUBNET:-192.168.250}
ENGINES=(1 2 3)
STACK=notes-tasks
# The engine whose veth the spec cuts: a worker, with nothing pinned to it.
LOST_ENGINE=3
UP_TIMEOUT=${SWARM_TEST_UP_TIMEOUT:-300}

mkdir -p "$LOGS"
network_created=false
declare -A dockerd_pids=()

# The Docker CLI against engine $1.
engine() {
	local n=$1
	shift
	DOCKER_HOST=unix://$RUN/$n/docker.sock docker "$@"
}

# --- network -------------------------------------------------------------------------------------

# A bridge in a namespace of its own, and one namespace a engine with a veth on it.
create_network() {
	local n
	network_created=true
	ip netns add "$LAN"
	ip -n "$LAN" link set lo up
	ip -n "$LAN" link add ntsbr0 type bridge
	ip -n "$LAN" addr add "$SUBNET.1/24" dev ntsbr0
	ip -n "$LAN" link set ntsbr0 up
	for n in "${ENGINES[@]}"; do
		ip netns add "nts-swarm-$n"
		ip -n "nts-swarm-$n" link set lo up
		ip -n "$LAN" link add "ntsv$n" type veth peer name eth0 netns "nts-swarm-$n"
		ip -n "$LAN" link set "ntsv$n" master ntsbr0 up
		ip -n "nts-swarm-$n" addr add "$SUBNET.1$n/24" dev eth0
		ip -n "nts-swarm-$n" link set eth0 up
		ip -n "nts-swarm-$n" route add default via "$SUBNET.1"
	done
}

delete_network() {
	local ns
	for ns in "$LAN" nts-swarm-1 nts-swarm-2 nts-swarm-3; do
		ip netns del "$ns" 2>/dev/null || true
	done
}

# --- engines -------------------------------------------------------------------------------------

# dockerd in the engine's network namespace (nsenter: under `ip netns exec` it would see no cgroup
# mounts) and in a UTS namespace of its own, so that its swarm node is named swarm-N.
start_engine() {
	local n=$1
	mkdir -p "$RUN/$n" "$OUT/engines/$n"
	setsid unshare --uts sh -c "hostname swarm-$n && exec nsenter --net=/run/netns/nts-swarm-$n \
		dockerd --storage-driver=overlay2 --data-root=$OUT/engines/$n --exec-root=$RUN/$n/exec \
		--pidfile=$RUN/$n/dockerd.pid -H unix://$RUN/$n/docker.sock" >"$LOGS/dockerd-$n.log" 2>&1 &
	dockerd_pids[$n]=$!
}

wait_engine() {
	local n=$1 deadline=$((SECONDS + 60))
	until engine "$n" version >/dev/null 2>&1; do
		kill -0 "${dockerd_pids[$n]}" 2>/dev/null || die "dockerd $n exited while starting" "$LOGS/dockerd-$n.log"
		((SECONDS < deadline)) || die "dockerd $n did not answer within 60s" "$LOGS/dockerd-$n.log"
		sleep 1
	done
	# What an interrupted run may have left in the data root (kept for its images).
	engine "$n" swarm leave --force >/dev/null 2>&1 || true
	engine "$n" container prune -f >/dev/null
	engine "$n" volume prune -f >/dev/null
}

stop_engine() { stop_process "${dockerd_pids[$1]}" "dockerd $1"; }

# Each engine gets the archive's images unless it already holds every one of them, by id.
load_images() {
	local n=$1 image id
	while read -r image id; do
		if [[ $(engine "$n" image inspect --format '{{.Id}}' "$image" 2>/dev/null) != "$id" ]]; then
			engine "$n" load -q -i "$OUT/images.tar" >>"$LOGS/load-$n.log" 2>&1
			return
		fi
	done <"$OUT/images.ids"
}

# --- swarm ---------------------------------------------------------------------------------------

form_swarm() {
	local token n
	engine 1 swarm init --advertise-addr "$SUBNET.11" --listen-addr "$SUBNET.11:2377" >>"$LOGS/swarm.log"
	token=$(engine 1 swarm join-token -q worker)
	for n in 2 3; do
		engine "$n" swarm join --token "$token" --advertise-addr "$SUBNET.1$n" --listen-addr "$SUBNET.1$n:2377" "$SUBNET.11:2377" >>"$LOGS/swarm.log"
	done
	engine 1 node update --label-add notes-tasks.rabbitmq=true --label-add notes-tasks.mongo=true \
		--label-add notes-tasks.edge=true --label-add notes-tasks.monitoring=true swarm-1 >/dev/null
}

# The stack's secrets, as a user makes them (`npm run secrets`), into .swarm/secrets; the deploy
# creates the swarm secrets from them. The REPL and the checks log in with them.
create_secrets() {
	export SECRETS_DIR=$OUT/secrets
	tsx scripts/secrets.ts >>"$LOGS/swarm.log" 2>&1 || die "npm run secrets failed" "$LOGS/swarm.log"
	export RABBIT_USER=notes-tasks RABBIT_PASSWORD SWARM_TEST_MONGO_USER=notes-tasks SWARM_TEST_MONGO_PASSWORD
	RABBIT_PASSWORD=$(cat "$SECRETS_DIR/rabbit_password")
	SWARM_TEST_MONGO_PASSWORD=$(cat "$SECRETS_DIR/mongo_password")
}

# "name running/desired" of every service of the stack, one a line.
service_replicas() { engine 1 service ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}} {{.Replicas}}'; }

# Every service of the stack at its desired count of running tasks; the one-shot mongo-users, whose
# task ends, done instead.
converged() { [[ -n $1 ]] && awk -v once="${STACK}_mongo-users" '$1 != once { split($2, r, "/"); if (r[1] != r[2]) bad = 1 } END { exit bad }' <<<"$1"; }
mongo_users_done() { engine 1 service ps --format '{{.CurrentState}}' "${STACK}_mongo-users" 2>/dev/null | grep -q '^Complete'; }

wait_converged() {
	local deadline=$((SECONDS + UP_TIMEOUT)) listing
	until listing=$(service_replicas) && converged "$listing" && mongo_users_done; do
		if ((SECONDS >= deadline)); then
			engine 1 stack ps --no-trunc "$STACK" >>"$LOGS/swarm.log" 2>&1 || true
			die "the stack did not converge within ${UP_TIMEOUT}s: $(paste -sd' ' <<<"$listing")" "$LOGS/swarm.log"
		fi
		sleep 2
	done
}

# Containers of the stack on any engine (the spec brings the lost engine back before it ends).
stack_leftovers() {
	local n
	for n in "${ENGINES[@]}"; do
		engine "$n" ps -aq --filter "label=com.docker.stack.namespace=$STACK" | sed "s/^/swarm-$n:container:/"
	done
}

remove_stack() {
	local deadline=$((SECONDS + 120)) left
	engine 1 stack rm "$STACK" >>"$LOGS/swarm.log" 2>&1 || true
	while left=$(stack_leftovers) && [[ -n $left ]]; do
		if ((SECONDS >= deadline)); then
			fail "docker stack rm left behind: $(paste -sd' ' <<<"$left")"
			return
		fi
		sleep 2
	done
	pass "docker stack rm removed every container of the stack from the three engines"
}

teardown() {
	local n left pid
	if [[ -S $RUN/1/docker.sock ]] && engine 1 info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null | grep -q active; then
		remove_stack
	fi
	for n in "${!dockerd_pids[@]}"; do engine "$n" swarm leave --force >/dev/null 2>&1 || true; done
	local stops=()
	for n in "${!dockerd_pids[@]}"; do
		stop_engine "$n" &
		stops+=($!)
	done
	for pid in "${stops[@]}"; do wait "$pid" || true; done
	if $network_created; then delete_network; fi
	left=$(
		ip netns list | grep -o '^nts-swarm-[a-z0-9]*' | sed 's/^/namespace:/'
		grep -E " ($RUN|$OUT/engines|/run/netns/nts-swarm)" /proc/mounts | cut -d' ' -f2 | sed 's/^/mount:/'
		pgrep -af "$RUN/" | sed 's/^/process:/'
	) || true
	if [[ -n $left ]]; then
		fail "teardown left behind: $(paste -sd' ' <<<"$left")"
	else
		pass "teardown left nothing: no namespace, bridge, veth, mount or process of the test"
	fi
	rm -rf "$RUN"
	say "the whole run took $(since "$total_started")"
}

total_started=$(now)
((EUID == 0)) || die "the swarm test creates network namespaces and runs dockerd: run it as root"
start_run teardown

# A run that was killed may have left its namespaces behind.
delete_network

step=$(now)
if [[ -n ${SWARM_TEST_HOST_LOCK:-} ]]; then
	flock "$SWARM_TEST_HOST_LOCK" scripts/swarm-images.sh
else
	scripts/swarm-images.sh
fi
say "image archive ready ($(since "$step"))"

step=$(now)
create_network
for n in "${ENGINES[@]}"; do start_engine "$n"; done
for n in "${ENGINES[@]}"; do wait_engine "$n"; done
say "three engines up in their namespaces ($(since "$step"))"

step=$(now)
# In parallel; `wait` names the loads: a bare one would wait for the dockerd too.
loads=()
for n in "${ENGINES[@]}"; do
	load_images "$n" &
	loads+=($!)
done
for pid in "${loads[@]}"; do wait "$pid" || die "docker load failed (logs: .swarm/logs/load-*.log)"; done
say "images on every engine ($(since "$step"))"

step=$(now)
form_swarm
nodes=$(engine 1 node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}' | sort | paste -sd',' -)
if [[ $nodes == "swarm-1 Ready Leader,swarm-2 Ready ,swarm-3 Ready " ]]; then
	pass "swarm formed: swarm-1 manager, swarm-2 and swarm-3 workers ($(since "$step"))"
else
	die "unexpected swarm nodes: $nodes"
fi

step=$(now)
create_secrets
# Host-mode ports of swarm-1, where the driver reaches the stack.
export NGINX_HOST_PORT=80 PROMETHEUS_HOST_PORT=9090 RABBITMQ_MANAGEMENT_HOST_PORT=15672
# The checks post hundreds of tasks a second from one client, and list them: Nginx's per-client
# limits (checked on the local stack, test/security) must not slow or refuse them here.
export NGINX_POST_RATE=100000 NGINX_POST_BURST=100000 NGINX_POST_CONCURRENCY=10000
export NGINX_LIST_RATE=100000 NGINX_LIST_BURST=100000 NGINX_LIST_QUEUE=100000 NGINX_LIST_TOTAL_RATE=100000 NGINX_LIST_TOTAL_QUEUE=100000
engine 1 stack deploy --resolve-image never -c docker-stack.yml -c test/swarm/docker-stack.test.yml "$STACK" >>"$LOGS/swarm.log" 2>&1 ||
	die "docker stack deploy refused the stack" "$LOGS/swarm.log"
wait_converged
pass "docker stack deploy: every service at its replicas ($(since "$step"))"

# Running is not yet serving: both gateways answer ready through Nginx before the checks begin.
step=$(now)
# shellcheck disable=SC2016 # the quoted text is JavaScript, not shell
ip netns exec "$LAN" node -e '
	const deadline = Date.now() + Number(process.argv[2]) * 1000;
	const ready = gateway => fetch(`http://${process.argv[1]}.11/${gateway}/health/ready`, { signal: AbortSignal.timeout(5000) }).then(r => r.ok, () => false);
	(async () => {
		while (!((await ready("flask")) && (await ready("go")))) {
			if (Date.now() > deadline) process.exit(1);
			await new Promise(resolve => setTimeout(resolve, 1000));
		}
	})();
' "$SUBNET" "$UP_TIMEOUT" || die "the gateways did not answer ready through Nginx within ${UP_TIMEOUT}s"
pass "both gateways ready through Nginx ($(since "$step"))"

export SWARM_TEST_SUBNET=$SUBNET SWARM_TEST_RUN=$RUN SWARM_TEST_STACK=$STACK SWARM_TEST_LOST_ENGINE=$LOST_ENGINE
say "the swarm checks (test/swarm/swarm.spec.ts), run inside $LAN"
ip netns exec "$LAN" npx jest --json --outputFile="$results/swarm.json" --selectProjects swarm --runInBand --forceExit || true
[[ -f $results/swarm.json ]] || fail "jest wrote no results"
