#!/usr/bin/env bash
# Validates the Kubernetes manifests of k8s/ offline (`npm run test:k8s`): installs the pinned
# kubernetes-validate (k8s/requirements.txt) into a venv under .k8s/ (git-ignored) when it is
# missing or the pins changed, then runs scripts/k8s-validate.py. The last line is "N passed, N failed".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.k8s/venv
pins=$(sha256sum "$ROOT/k8s/requirements.txt" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || $(cat "$VENV/requirements.sha256" 2>/dev/null) != "$pins" ]]; then
	echo "[k8s] installing kubernetes-validate into .k8s/venv (log: .k8s/pip.log)"
	rm -rf "$VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --no-input -r "$ROOT/k8s/requirements.txt" >"$ROOT/.k8s/pip.log" 2>&1 ||
		{ tail -n 20 "$ROOT/.k8s/pip.log" >&2; echo "0 passed, 1 failed"; exit 1; }
	echo "$pins" >"$VENV/requirements.sha256"
fi
exec "$VENV/bin/python" "$ROOT/scripts/k8s-validate.py"
