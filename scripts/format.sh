#!/usr/bin/env bash
# Format every tracked C source with the repo's .clang-format (scripts/test.sh checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files '*.c' '*.h' | xargs clang-format -i
