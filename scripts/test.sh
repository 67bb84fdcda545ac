#!/usr/bin/env bash
# The whole test suite: unit tests, then the local stack (RabbitMQ, FerretDB, Nginx and the
# cluster's nodes) for the integration and end-to-end suites, then the fault suites, which kill
# and restart parts of that stack (each leaves it healthy). A stack this script started is
# stopped again at the end; one that was already running is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."

npx jest --selectProjects unit "$@"

started_stack=false
if ! scripts/stack.sh status >/dev/null 2>&1; then
	scripts/stack.sh up
	started_stack=true
fi
stop_stack() { if $started_stack; then scripts/stack.sh down; fi; }
trap stop_stack EXIT

npx jest --selectProjects integration e2e --runInBand "$@"
npx jest --selectProjects faults --runInBand "$@"
