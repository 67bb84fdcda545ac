#!/usr/bin/env bash
# The whole test suite: unit tests, then the local stack (RabbitMQ, FerretDB, Nginx and the
# cluster's nodes) for the integration, end-to-end and security suites, then the fault suites, which kill
# and restart parts of that stack (each leaves it healthy). A stack this script started is
# stopped again at the end; one that was already running is left as it was. The last line
# totals every suite as "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

results=$(mktemp -d)
started_stack=false

# The totals of every suite that ran, as CI reads them: "N passed, N failed".
print_totals() {
	compgen -G "$results/*.json" >/dev/null || return 0
	# shellcheck disable=SC2016 # the quoted text is JavaScript, not shell
	node -e '
		let passed = 0, failed = 0;
		for (const file of process.argv.slice(1)) {
			const run = JSON.parse(require("node:fs").readFileSync(file, "utf8"));
			passed += run.numPassedTests;
			failed += run.numFailedTests;
		}
		console.log(`${passed} passed, ${failed} failed`);
	' "$results"/*.json
}

finish() {
	if $started_stack; then scripts/stack.sh down; fi
	print_totals
	rm -rf "$results"
}
trap finish EXIT

run_jest() {
	local name=$1
	shift
	npx jest --json --outputFile="$results/$name.json" "$@"
}

run_jest unit --selectProjects unit "$@"

if ! scripts/stack.sh status >/dev/null 2>&1; then
	scripts/stack.sh up
	started_stack=true
fi

run_jest stack --selectProjects integration e2e security --runInBand "$@"
run_jest faults --selectProjects faults --runInBand "$@"
