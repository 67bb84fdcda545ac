#!/usr/bin/env bash
# The docker-compose deployment tested the way users run it (`npm run test:compose`): a real
# Docker engine, `docker compose build`, `up -d --scale worker-py=3 --scale worker-go=2` with the
# `monitoring` profile (Prometheus), then
# the security checks (test/compose/security.spec.ts), the e2e API suite through Nginx, the
# compose checks (test/compose/compose.spec.ts), the rotation of every password
# (test/compose/rotation.spec.ts), and
# `down -v`; then the same with the HA overlay, docker-compose.ha.yml (three clustered RabbitMQ
# nodes, a quorum task queue), one container a role, through the kill of a RabbitMQ node under
# load (test/compose/ha-overlay.spec.ts), and `down -v` at the end.
#
# What it brings along when the machine lacks it, each cached under .compose/ (git-ignored):
#   - Debian's docker.io, installed with apt-get;
#   - a dockerd of its own (data, sockets and pid file under .compose/) when none answers; it is
#     stopped again at the end, while an engine that was already running is left alone;
#   - the compose v2 CLI plugin, built once with Go (~5 min cold) when `docker compose` is missing;
#   - the five public images: pulled when a registry serves them, otherwise stand-ins built from
#     test/compose/stand-ins on a debootstrap Debian, rebuilt only when their sources change.
#
# Host ports (none collides with the local stack of scripts/stack.sh): COMPOSE_TEST_NGINX_PORT
# (18480), COMPOSE_TEST_RABBITMQ_PORT (18672), COMPOSE_TEST_MONGO_PORT (18717, 127.0.0.1 only, for
# the suites' reads), COMPOSE_TEST_PROMETHEUS_PORT (18490), and for the HA overlay the management
# API of rabbitmq-2 and rabbitmq-3, COMPOSE_TEST_RABBITMQ_2_PORT (18673) and
# COMPOSE_TEST_RABBITMQ_3_PORT (18674), 127.0.0.1 only. COMPOSE_TEST_PULL=never skips the pull
# attempt; =always fails without it. COMPOSE_TEST_ONLY_HA=1 runs the HA stage alone (to repeat the
# node kill, whose outcome varies from run to run, in half the time); COMPOSE_TEST_ONLY_SECURITY=1
# the first stage with the security and rotation checks alone.
# The stack's secrets are written once with `npm run secrets` into .compose/secrets (SECRETS_DIR).
# The last line totals the checks as "N passed, N failed".
set -euo pipefail

# shellcheck source=scripts/lib/test-run.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-run.sh"
COMPOSE_VERSION=v2.40.3
PULL=${COMPOSE_TEST_PULL:-auto}
PULL_TIMEOUT=${COMPOSE_TEST_PULL_TIMEOUT:-30}
# The engine, the five public images or their stand-ins, and the cache .compose/ (CACHE, LOGS):
# shared with scripts/swarm-images.sh.
# shellcheck source=scripts/lib/docker-images.sh
source "$ROOT/scripts/lib/docker-images.sh"
# Each wait is bounded: the stack's own start, a build, one pull.
UP_TIMEOUT=${COMPOSE_TEST_UP_TIMEOUT:-240}

export COMPOSE_PROJECT_NAME=${COMPOSE_TEST_PROJECT:-notes-tasks-compose-test}
# The test override publishes MongoDB on the loopback, for the suites that read what was stored.
BASE_FILES=docker-compose.yml:test/compose/docker-compose.test.yml
# The HA stage adds the overlay users run, and the management API of its other two nodes.
HA_FILES=docker-compose.yml:docker-compose.ha.yml:test/compose/docker-compose.test.yml:test/compose/docker-compose.ha.test.yml
export COMPOSE_FILE=$BASE_FILES
export NGINX_HOST_PORT=${COMPOSE_TEST_NGINX_PORT:-18480}
export RABBITMQ_MANAGEMENT_HOST_PORT=${COMPOSE_TEST_RABBITMQ_PORT:-18672}
export COMPOSE_TEST_MONGO_PORT=${COMPOSE_TEST_MONGO_PORT:-18717}
export PROMETHEUS_HOST_PORT=${COMPOSE_TEST_PROMETHEUS_PORT:-18490}
export COMPOSE_TEST_RABBITMQ_2_PORT=${COMPOSE_TEST_RABBITMQ_2_PORT:-18673}
export COMPOSE_TEST_RABBITMQ_3_PORT=${COMPOSE_TEST_RABBITMQ_3_PORT:-18674}
# The suites post hundreds of tasks a second from this host, and list them as fast, which reaches
# Nginx from the Docker network's gateway address: one client to Nginx's per-client limits. The
# limits themselves are checked on the local stack (test/security); here they must not slow or
# refuse the load.
export NGINX_POST_RATE=${COMPOSE_TEST_NGINX_POST_RATE:-100000}
export NGINX_POST_BURST=${COMPOSE_TEST_NGINX_POST_BURST:-100000}
export NGINX_POST_CONCURRENCY=${COMPOSE_TEST_NGINX_POST_CONCURRENCY:-10000}
export NGINX_LIST_RATE=${COMPOSE_TEST_NGINX_LIST_RATE:-100000}
export NGINX_LIST_BURST=${COMPOSE_TEST_NGINX_LIST_BURST:-100000}
export NGINX_LIST_QUEUE=${COMPOSE_TEST_NGINX_LIST_QUEUE:-100000}
export NGINX_LIST_TOTAL_RATE=${COMPOSE_TEST_NGINX_LIST_TOTAL_RATE:-100000}
export NGINX_LIST_TOTAL_QUEUE=${COMPOSE_TEST_NGINX_LIST_TOTAL_QUEUE:-100000}
# What test/support/rabbitmq.ts reads the task queue's counters from: the first node's UI.
export TEST_RABBIT_MANAGEMENT_URL=http://127.0.0.1:$RABBITMQ_MANAGEMENT_HOST_PORT
# The stack's secrets, as a user makes them (`npm run secrets`), kept under .compose/ for the next
# run; the suites log in with them (test/compose/security.spec.ts reads the files too).
export SECRETS_DIR=$CACHE/secrets
# Prometheus too: the compose checks read its targets.
export COMPOSE_PROFILES=monitoring
export COMPOSE_TEST_UP_TIMEOUT=$UP_TIMEOUT
# The classic builder: it needs no buildx plugin (Debian bookworm packages none), and it takes a
# FROM image from the engine's store, a stand-in included, without asking a registry.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
export COMPOSE_BAKE=false

stack_created=false

# What the end of the run cleans up, pass or fail: the stack, then the dockerd this script started.
clean_up() {
	local status=0
	if $stack_created; then remove_stack || status=1; fi
	if $started_dockerd; then stop_dockerd; fi
	return "$status"
}
start_run clean_up

# Leftovers of the project after `down -v`: containers, volumes and networks by compose's label.
project_leftovers() {
	local label=label=com.docker.compose.project=$COMPOSE_PROJECT_NAME
	{
		docker ps -a --filter "$label" --format '{{.Names}}'
		docker volume ls --filter "$label" --format '{{.Name}}'
		docker network ls --filter "$label" --format '{{.Name}}'
	} | paste -sd' ' -
}

# `down -v` with the files of both stages, so that it also removes rabbitmq-2, rabbitmq-3 and
# their volumes; then nothing of the project may be left.
remove_stack() {
	local left
	say "removing the stack and its volumes (down -v)"
	if ! COMPOSE_FILE=$HA_FILES timeout 180 docker compose --profile tools --profile monitoring down -v --remove-orphans >>"$LOGS/compose.log" 2>&1; then
		fail "down -v failed (log: .compose/logs/compose.log)"
		return 1
	fi
	stack_created=false
	left=$(project_leftovers)
	if [[ -n $left ]]; then
		fail "down -v left behind: $left"
		return 1
	fi
	pass "down -v removed the stack: no container, volume or network of $COMPOSE_PROJECT_NAME left"
}

# --- compose v2 ----------------------------------------------------------------------------------

# Compose v2 is not packaged in Debian. `go install .../cmd@version` is refused because of the
# exclude directives in its go.mod, so the module is downloaded and ./cmd built inside it, as
# its main module. The binary is kept as a CLI plugin in a docker config directory of our own.
compose_plugin() {
	if docker compose version >/dev/null 2>&1; then return 0; fi
	local bin=$CACHE/bin/docker-compose hash dir started
	hash=$(printf 'github.com/docker/compose/v2@%s CGO_ENABLED=0 -trimpath' "$COMPOSE_VERSION" | sha256sum | cut -d' ' -f1)
	if [[ ! -x $bin || $(cat "$bin.sha256" 2>/dev/null) != "$hash" ]]; then
		command -v go >/dev/null || die "Go is needed to build the compose v2 plugin once: install Go >= 1.24 (https://go.dev/dl/)"
		say "building docker compose $COMPOSE_VERSION with Go (once, ~5 min cold; log: .compose/logs/compose-build.log)"
		started=$(now)
		mkdir -p "$CACHE/bin"
		# A subshell: the build runs inside the module's directory, the script stays in ROOT.
		(
			dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
			[[ -n $dir ]] && cd "$dir" &&
				CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" \
					-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd
		) >"$LOGS/compose-build.log" 2>&1 || die "building docker compose failed" "$LOGS/compose-build.log"
		mv "$bin.tmp" "$bin"
		echo "$hash" >"$bin.sha256"
		say "docker compose built in $(since "$started")"
	fi
	export DOCKER_CONFIG=$CACHE/docker-config
	mkdir -p "$DOCKER_CONFIG/cli-plugins"
	ln -sfn "$bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
	docker compose version >/dev/null 2>&1 || die "the compose plugin in $bin does not run"
}

# --- the stack -----------------------------------------------------------------------------------

SCALE=(--scale worker-py=3 --scale worker-go=2)

# What the e2e suite reads to find the stack (like .stack/stack.env for the local stack): the
# host ports, and the Moleculer node id of every container, taken from its metrics' labels. A
# container's node id is <host name>-<pid>, which does not name its role: STACK_NODE_ROLES does.
# Arguments: how many cluster containers the stage runs, and the management ports of its RabbitMQ
# nodes (comma-separated).
write_stack_env() {
	local expected=$1 management_ports=$2 env_file=$CACHE/stack.env nodes=() roles=() container service node
	while read -r container service; do
		node=$(docker exec "$container" node -e "fetch('http://127.0.0.1:' + process.env.METRICS_PORT + '/metrics').then(r => r.text()).then(t => console.log(/nodeID=\"([^\"]+)\"/.exec(t)[1]))") ||
			die "could not read the node id of container $container ($service)"
		nodes+=("$node")
		roles+=("$node=$service")
	done < <(docker compose ps --format '{{.ID}} {{.Service}}' api-flask api-go worker-py worker-go)
	((${#nodes[@]} == expected)) || die "expected $expected cluster containers, found ${#nodes[@]}: ${nodes[*]}"
	{
		echo "# Written by scripts/compose-test.sh: how the e2e suite reaches the compose stack."
		grep -E '^(NAMESPACE|RABBIT_QUEUE|DB_NAME|MAX_BODY_BYTES|METRICS_PORT)=' .env
		echo "NGINX_PORT=$NGINX_HOST_PORT"
		echo "RABBITMQ_MANAGEMENT_PORT=$RABBITMQ_MANAGEMENT_HOST_PORT"
		echo "RABBITMQ_MANAGEMENT_PORTS=$management_ports"
		echo "MONGO_URI=mongodb://$(dotenv MONGO_USER):$(cat "$SECRETS_DIR/mongo_password")@127.0.0.1:$COMPOSE_TEST_MONGO_PORT/?authSource=admin"
		echo "PROMETHEUS_PORT=$PROMETHEUS_HOST_PORT"
		echo "STACK_NODES=$(IFS=,; echo "${nodes[*]}")"
		echo "STACK_NODE_ROLES=$(IFS=,; echo "${roles[*]}")"
	} >"$env_file"
	export STACK_ENV=$env_file
}

# A value of .env.
dotenv() { sed -n "s/^$1=//p" .env; }

# The management API's administrator for test/support/rabbitmq.ts, as the secrets say now
# (test/compose/rotation.spec.ts changes them).
export_management_login() {
	export TEST_RABBIT_MANAGEMENT_USER TEST_RABBIT_MANAGEMENT_PASSWORD
	TEST_RABBIT_MANAGEMENT_USER=$(dotenv RABBIT_ADMIN_USER)
	TEST_RABBIT_MANAGEMENT_PASSWORD=$(cat "$SECRETS_DIR/rabbit_admin_password")
}

# `up -d --wait` of the stage's files; $1 says which stage, the rest are up's own arguments.
up_stack() {
	local stage=$1 step
	shift
	step=$(now)
	say "docker compose up -d --wait $stage: Nginx on :$NGINX_HOST_PORT, RabbitMQ UI on :$RABBITMQ_MANAGEMENT_HOST_PORT"
	stack_created=true
	if timeout "$((UP_TIMEOUT + 30))" docker compose up -d --wait --wait-timeout "$UP_TIMEOUT" "$@" >>"$LOGS/compose.log" 2>&1; then
		pass "up -d --wait $stage: every service healthy in $(since "$step")"
	else
		docker compose ps -a >>"$LOGS/compose.log" 2>&1 || true
		docker compose logs --tail 30 >>"$LOGS/compose.log" 2>&1 || true
		die "the stack did not become healthy within ${UP_TIMEOUT}s ($stage)" "$LOGS/compose.log"
	fi
}

total_started=$(now)

step=$(now)
install_docker
if engine_answers; then
	say "using the Docker engine that is running ($(docker version --format '{{.Server.Version}}'))"
else
	start_dockerd
fi
say "Docker engine ready ($(since "$step"))"

step=$(now)
compose_plugin
say "$(docker compose version) ready ($(since "$step"))"

step=$(now)
stand_ins_used=()
provide_images
if ((${#stand_ins_used[@]})); then
	say "stand-ins used: ${stand_ins_used[*]}"
else
	say "public images used for all five"
fi
say "images ready ($(since "$step"))"

# A stack left over by an interrupted run, of either stage, would hold the ports and the data.
COMPOSE_FILE=$HA_FILES docker compose --profile tools --profile monitoring down -v --remove-orphans >>"$LOGS/compose.log" 2>&1 || true

say "secrets: npm run secrets into .compose/secrets"
tsx scripts/secrets.ts >>"$LOGS/compose.log" 2>&1 || die "npm run secrets failed" "$LOGS/compose.log"

step=$(now)
# Every cluster service builds the same image: building one builds it once. (The classic builder
# would run one build per service, in parallel.)
say "building the project image with docker compose build api-flask (log: .compose/logs/compose.log)"
timeout 900 docker compose build api-flask >>"$LOGS/compose.log" 2>&1 || die "docker compose build failed" "$LOGS/compose.log"
say "project image built ($(since "$step"))"

if [[ ${COMPOSE_TEST_ONLY_HA:-} != 1 ]]; then
	export_management_login
	up_stack "${SCALE[*]}" "${SCALE[@]}"
	write_stack_env 7 "$RABBITMQ_MANAGEMENT_HOST_PORT"

	step=$(now)
	say "the security checks: logins, the network split, the containers' hardening, the Erlang cookie"
	run_jest compose-security --selectProjects compose --runTestsByPath test/compose/security.spec.ts
	if [[ ${COMPOSE_TEST_ONLY_SECURITY:-} != 1 ]]; then
		say "the e2e API suite against the compose stack, through Nginx"
		run_jest e2e-api --selectProjects e2e --runTestsByPath test/e2e/api.spec.ts
		say "the compose checks: workers, scaling, a killed worker, the REPL, down and up"
		run_jest compose --selectProjects compose --runTestsByPath test/compose/compose.spec.ts
	fi
	say "rotating every password of the running stack, without down -v"
	run_jest compose-rotation --selectProjects compose --runTestsByPath test/compose/rotation.spec.ts
	say "suites done ($(since "$step"))"
	remove_stack || exit 1
	[[ ${COMPOSE_TEST_ONLY_SECURITY:-} != 1 ]] || exit 0
fi

# --- the HA overlay ------------------------------------------------------------------------------

# One container a role and no Prometheus: three RabbitMQ nodes are load enough for 2 cores.
ha_started=$(now)
export COMPOSE_FILE=$HA_FILES COMPOSE_PROFILES=
export_management_login
up_stack "with docker-compose.ha.yml"
write_stack_env 4 "$RABBITMQ_MANAGEMENT_HOST_PORT,$COMPOSE_TEST_RABBITMQ_2_PORT,$COMPOSE_TEST_RABBITMQ_3_PORT"
say "the HA checks: one cluster, a quorum task_queue, the leader's node killed during the load (report: .compose/ha-report.txt)"
run_jest compose-ha --selectProjects compose --runTestsByPath test/compose/ha-overlay.spec.ts
# What the gateways and workers logged of the kill (reconnects, channels replaced), before down -v.
docker compose logs --no-color --timestamps api-flask api-go worker-py worker-go >"$LOGS/compose-ha-services.log" 2>&1 || true
say "HA stage done ($(since "$ha_started") before down -v); the whole run took $(since "$total_started")"
