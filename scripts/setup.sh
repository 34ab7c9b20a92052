#!/usr/bin/env bash
# Create ./.venv with htsr installed (editable). "scripts/setup.sh test" adds torch (CPU build
# 2.13.0) and the test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "${1:-}" = "test" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,all]"
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
fi
