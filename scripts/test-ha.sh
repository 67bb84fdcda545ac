#!/usr/bin/env bash
# npm run test:ha: the local stack with a 3-node RabbitMQ cluster and a quorum task queue
# (RABBIT_NODES=3), the HA suite against it (a node SIGKILLed during 10,000 posts, then a rolling
# restart of all three), and the stack stopped again. The last line is "N passed, N failed".
#
# Another local stack must not run: the cluster takes the same ports. With STACK_LOCK set to a
# lock file, the whole run holds that lock (flock), as machines that share one stack need.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n ${STACK_LOCK:-} && -z ${STACK_LOCKED:-} ]]; then
	exec env STACK_LOCKED=1 flock "$STACK_LOCK" "$0" "$@"
fi

export RABBIT_NODES=3
# The suite's own look at the queues (test/support/rabbitmq.ts) goes to the cluster's first node.
export TEST_RABBIT_URL=amqp://guest:guest@127.0.0.1:5682/%2F TEST_RABBIT_MANAGEMENT_URL=http://127.0.0.1:15682
results=$(mktemp)
started=$(date +%s)

finish() {
	scripts/stack.sh down
	# shellcheck disable=SC2016 # the quoted text is JavaScript, not shell
	[[ -s $results ]] && node -e '
		const run = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
		console.log(`${run.numPassedTests} passed, ${run.numFailedTests} failed`);
	' "$results"
	rm -f "$results"
	echo "[test:ha] took $(($(date +%s) - started)) s"
}

if scripts/stack.sh status >/dev/null 2>&1 || [[ -f .stack/stack.env ]]; then
	echo "[test:ha] a local stack runs already; stop it first (npm run stack:down)" >&2
	exit 1
fi
trap finish EXIT
# From empty data directories: task_queue is declared anew through rq1, which every client tries
# first, so its leader is there too and the SIGKILL of the leader's node takes both at once.
rm -rf .stack/rabbitmq
scripts/stack.sh up
npx jest --selectProjects ha --runInBand --json --outputFile="$results" "$@"
