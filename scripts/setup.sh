#!/usr/bin/env bash
# Create ./.venv with htsr installed (editable). "scripts/setup.sh test" adds torch 2.13.0, the test
# dependencies and, when missing, Debian's chromium (the report's browser tests). torch is the build pip's
# configuration offers: this project's machines have the CPU build in their find-links; plain PyPI on x86-64
# Linux gives the CUDA build (several GB), so there set HTSR_TORCH_INDEX=https://download.pytorch.org/whl/cpu.
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
    .venv/bin/python -m pip install --quiet --disable-pip-version-check ${HTSR_TORCH_INDEX:+--index-url "$HTSR_TORCH_INDEX"} torch==2.13.0
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,all]"
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
fi
