# The frame of the scripts that test the project on Docker (scripts/compose-test.sh,
# scripts/swarm-test.sh, scripts/swarm-images.sh): the checkout as working directory, messages
# tagged with the script's name, the script's own checks counted with the jest suites' tests, and
# an exit that always cleans up and totals them as "N passed, N failed". Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# The project's Node (the `node` dev dependency) for jest, also when a script is run directly
# rather than through npm.
PATH=$ROOT/node_modules/.bin:$PATH

SCRIPT_NAME=$(basename "$0" .sh)
passed=0
failed=0

say() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*"; }
now() { date +%s; }
since() { echo "$(($(now) - $1))s"; }

# A check of the script itself, counted with the jest suites' tests.
pass() { passed=$((passed + 1)); say "PASS $*"; }
fail() { failed=$((failed + 1)); say "FAIL $*" >&2; }

# Setup that cannot go on: say why (with the tail of the log $2), count it as a failure, and
# exit; the EXIT trap still cleans up.
die() {
	fail "$1"
	if [[ -n ${2:-} && -f $2 ]]; then
		printf '[%s] last lines of %s:\n' "$SCRIPT_NAME" "$2" >&2
		tail -n 40 "$2" | sed 's/^/    /' >&2
	fi
	exit 1
}

# Stops process $1 (named $2 in messages) with SIGTERM, and SIGKILL if it is still there after 60s.
stop_process() {
	local pid=$1 name=$2 deadline=$((SECONDS + 60))
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			say "$name did not stop within 60s: killing it"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 1
	done
	wait "$pid" 2>/dev/null || true
}

# jest with the arguments after $1, its results kept as $1 for the totals; a failed test does not
# stop the script.
run_jest() {
	local name=$1
	shift
	npx jest --json --outputFile="$results/$name.json" --runInBand "$@" || true
	[[ -f $results/$name.json ]] || fail "jest $name wrote no results"
}

print_totals() {
	local files=()
	mapfile -t files < <(compgen -G "$results/*.json" || true)
	# shellcheck disable=SC2016 # the quoted text is JavaScript, not shell
	node -e '
		let [passed, failed] = process.argv.slice(1, 3).map(Number);
		for (const file of process.argv.slice(3)) {
			const run = JSON.parse(require("node:fs").readFileSync(file, "utf8"));
			passed += run.numPassedTests;
			failed += run.numFailedTests + (run.numRuntimeErrorTestSuites ?? 0);
		}
		console.log(`${passed} passed, ${failed} failed`);
	' "$passed" "$failed" "${files[@]}"
}

# The EXIT trap: runs the script's cleanup $1, then prints the totals. A command that failed
# outside the checks (set -e) still counts, so the totals never read "0 failed" for a run that did
# not finish; a failed jest test fails the run too, not only the script's own checks.
finish_run() {
	local status=$? cleanup=$1 totals
	trap - EXIT INT TERM
	if ((status != 0 && failed == 0)); then fail "the script stopped early (exit status $status)"; fi
	"$cleanup" || status=1
	totals=$(print_totals)
	rm -rf "$results"
	echo "$totals"
	if ((failed > 0)) || { [[ $totals =~ ([0-9]+)\ failed ]] && ((BASH_REMATCH[1] > 0)); }; then status=1; fi
	exit "$status"
}

# The start of a run that totals its checks: from here on, whatever ends the script (an error,
# Ctrl+C) runs finish_run with cleanup $1.
start_run() {
	# Where run_jest writes each suite's results, for the totals.
	results=$(mktemp -d)
	# shellcheck disable=SC2064 # the cleanup's name is fixed now, on purpose
	trap "finish_run $1" EXIT
	trap 'exit 130' INT TERM
}
