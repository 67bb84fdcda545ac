#!/usr/bin/env bash
# A Moleculer REPL node that joins the running local stack (`npm run repl`): it runs no services
# and reaches the cluster over RabbitMQ with the settings `stack.sh up` wrote to .stack/stack.env.
# Try: nodes, services, call tasks.list, queue, post "a title", latest 5.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# The project's Node (the `node` dev dependency), also when this script is run directly rather than through npm.
PATH=$ROOT/node_modules/.bin:$PATH

if [[ -f .stack/stack.env ]]; then
	set -a
	# shellcheck source=/dev/null
	source .stack/stack.env
	set +a
else
	echo "[repl] .stack/stack.env not found (is the stack up? npm run stack:up): starting a REPL of its own" >&2
fi
export NODE_ID=${NODE_ID:-repl-$(hostname -s)-$$}

exec tsx node_modules/moleculer/bin/moleculer-runner.js --repl --config moleculer.config.ts
