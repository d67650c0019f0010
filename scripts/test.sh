#!/usr/bin/env bash
# Builds and runs every test: unit, numerical, end-to-end and documentation tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d ../shared/models ] && export QSH_MODELS="${QSH_MODELS:-$PWD/../shared/models}"
[ -d ../shared/data ] && export QSH_DATA="${QSH_DATA:-$PWD/../shared/data}"
# One release build serves the tests and the end-to-end runs of the qsh binary beside them.
swift test -c release "$@"
