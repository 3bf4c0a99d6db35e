#!/usr/bin/env bash
# Creates (or reuses) the Python environment for tools/: the Emotion-GCN
# trainer/exporter and the model/fixture scripts. Prints the venv path.
# torch from PyPI brings its CUDA libraries (~3 GB): the venv lives in a
# cache folder outside the clone so repeated runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FER_EDGE_VENV:-${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}/venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
stamp="$venv/.fer-edge-requirements"
if ! cmp -s tools/requirements.txt "$stamp" 2>/dev/null; then
  # Stamp exactly what was installed, even if the file changes meanwhile.
  snapshot=$(mktemp)
  cp tools/requirements.txt "$snapshot"
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -r "$snapshot" >&2
  mv "$snapshot" "$stamp"
fi
"$venv/bin/pip" install -q --no-deps -e tools/emotion_gcn >&2
echo "$venv"
