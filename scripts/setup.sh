#!/usr/bin/env bash
# Create ./.venv with htsr installed (editable). "scripts/setup.sh test" adds torch (CPU build
# 2.13.0), the test dependencies and, when missing, Debian's chromium (the report's browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "${1:-}" = "test" ]; then
    if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && [ -z "${HTSR_CHROMIUM:-}" ]; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
            || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
            || echo "setup.sh: could not install chromium; the browser tests will fail (HTSR_SKIP_BROWSER=1 skips them)" >&2
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,all]"
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
fi
