#!/usr/bin/env bash
# Builds the command in this directory into OUTPUT, against FerretDB's module with patches/*.patch
# applied:
#   tools/ferretdb/build.sh OUTPUT [go build flags...]
#
# Go has no way to patch one file of a dependency: -overlay refuses files in the module cache, and
# a vendored copy of the module would put 3.4 MB in the repository for a one-line change. So this
# copies the module that go.sum verifies (from the module cache, offline once downloaded), applies
# the patches, and builds against the copy through a `replace` in a copy of go.mod. A patch that no
# longer applies (FerretDB upgraded) stops the build instead of being lost.
set -euo pipefail

(($# >= 1)) || { echo "usage: $0 OUTPUT [go build flags...]" >&2; exit 2; }
out=$(realpath -m "$1")
shift
here=$(cd "$(dirname "$0")" && pwd)
module=github.com/FerretDB/FerretDB

cd "$here"
go mod download "$module"
source=$(go list -m -f '{{.Dir}}' "$module")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -R "$source" "$work/module"
chmod -R u+w "$work/module"
for patch in "$here"/patches/*.patch; do
	# The ceiling keeps git from taking an enclosing repository for the module's own.
	(cd "$work/module" && GIT_CEILING_DIRECTORIES="$work" git apply "$patch")
done

cp go.mod go.sum "$work/"
go mod edit -replace="$module=$work/module" "$work/go.mod"
# -trimpath: the copy's path changes on every build, and would otherwise be in the binary and
# defeat Go's build cache.
go build -modfile="$work/go.mod" -trimpath "$@" -o "$out" .
