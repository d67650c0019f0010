#!/usr/bin/env bash
# The main job: install what qsh needs, build it, and run the quick-start recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
# Models and data: ../shared when it is there (development checkouts), else the user cache.
[ -d ../shared/models ] && export QSH_MODELS="${QSH_MODELS:-$PWD/../shared/models}"
[ -d ../shared/data ] && export QSH_DATA="${QSH_DATA:-$PWD/../shared/data}"
.build/release/qsh examples/quickstart.qs
