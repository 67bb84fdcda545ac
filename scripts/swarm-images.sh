#!/usr/bin/env bash
# The images of the swarm test (scripts/swarm-test.sh), made once on a Docker engine in the host's
# network namespace and saved into one archive that the test loads into each of its engines (there
# is no registry here): the five public images or their stand-ins (scripts/lib/docker-images.sh,
# the compose test's code and cache, .compose/), the project image, and two variants of it for the
# update checks:
#   notes-tasks-cluster:next      the same code under a new image id (a rolling update to it)
#   notes-tasks-cluster:unhealthy runs no node, whatever its command, so its healthcheck never
#                                 passes (a rollback)
# Writes .swarm/images.tar and .swarm/images.ids ("image id" lines); skips everything when
# .swarm/images.source names the same sources as now. It starts a host-namespace dockerd: on a
# machine shared with the compose test, run it under that test's lock.
set -euo pipefail

# shellcheck source=scripts/lib/test-run.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-run.sh"
OUT=$ROOT/.swarm
PULL=${SWARM_TEST_PULL:-auto}
PULL_TIMEOUT=${SWARM_TEST_PULL_TIMEOUT:-30}
export DOCKER_BUILDKIT=0
# shellcheck source=scripts/lib/docker-images.sh
source "$ROOT/scripts/lib/docker-images.sh"

# Everything the archive is made of: the stand-ins' sources, FerretDB, the project's build context.
source_hash() {
	{
		node --version
		find Dockerfile package.json package-lock.json tsconfig.json tsconfig.build.json moleculer.config.ts \
			lib middlewares mixins repl services test/compose/stand-ins tools/ferretdb scripts/lib/docker-images.sh \
			"${BASH_SOURCE[0]}" -type f -print0 | sort -z | xargs -0 sha256sum
	} | sha256sum | cut -d' ' -f1
}

mkdir -p "$OUT"
hash=$(source_hash)
if [[ -f $OUT/images.tar && $(cat "$OUT/images.source" 2>/dev/null) == "$hash" ]]; then
	say "images cached in .swarm/images.tar"
	exit 0
fi

trap 'if $started_dockerd; then stop_dockerd; fi' EXIT
started=$(now)
install_docker
start_dockerd
stand_ins_used=()
provide_images
say "building $PROJECT_IMAGE (log: .compose/logs/swarm-images.log)"
timeout 900 docker build -t "$PROJECT_IMAGE" . >>"$LOGS/swarm-images.log" 2>&1 || die "docker build failed" "$LOGS/swarm-images.log"
printf 'FROM %s\nLABEL org.notes-tasks.variant=next\n' "$PROJECT_IMAGE" |
	docker build -t notes-tasks-cluster:next - >>"$LOGS/swarm-images.log" 2>&1 || die "building :next failed" "$LOGS/swarm-images.log"
# Its entrypoint ignores the command it is given (the stack's gateways have one), and runs no node.
printf 'FROM %s\nLABEL org.notes-tasks.variant=unhealthy\nENTRYPOINT ["/bin/sh", "-c", "exec sleep infinity", "--"]\n' "$PROJECT_IMAGE" |
	docker build -t notes-tasks-cluster:unhealthy - >>"$LOGS/swarm-images.log" 2>&1 || die "building :unhealthy failed" "$LOGS/swarm-images.log"

images=("${!STAND_INS[@]}" "$PROJECT_IMAGE" notes-tasks-cluster:next notes-tasks-cluster:unhealthy)
say "saving ${#images[@]} images into .swarm/images.tar"
docker save -o "$OUT/images.tar.tmp" "${images[@]}"
mv "$OUT/images.tar.tmp" "$OUT/images.tar"
for image in "${images[@]}"; do echo "$image $(docker image inspect --format '{{.Id}}' "$image")"; done >"$OUT/images.ids"
echo "$hash" >"$OUT/images.source"
say "images ready in $(since "$started")"
