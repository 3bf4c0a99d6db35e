#!/usr/bin/env bash
# Supply chain checks and the SBOM (issue #12):
#   tools/supply-chain.sh check   cargo deny: licences, bans, sources (deny.toml)
#   tools/supply-chain.sh sbom    dist/sbom/fer-edge.spdx.json (SPDX 2.3, every crate in the build)
# The tools are installed once into <cache>/cargo-tools from crates.io.
# The advisories check is not run: its RustSec database is fetched from
# GitHub, which our CI machines cannot reach (`cargo deny check advisories`
# where they can).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}/cargo-tools"
export PATH="$tools/bin:$PATH"
need() {
  command -v "$1" >/dev/null 2>&1 || cargo install -q --locked "$2" --version "$3" --root "$tools" >&2
}
case "${1:-check}" in
  check)
    need cargo-deny cargo-deny 0.20.2
    # cargo-deny's metadata spans every target in deny.toml and every
    # feature, so it needs crates that a build on this machine never
    # downloads (windows-sys, alloca, ...): fetch them all first (cargo fetch
    # without --target fetches for every platform), then check offline.
    cargo fetch --locked
    cargo deny --offline --locked check licenses bans sources
    ;;
  sbom)
    need cargo-sbom cargo-sbom 0.10.0
    mkdir -p dist/sbom
    cargo sbom --output-format spdx_json_2_3 > dist/sbom/fer-edge.spdx.json
    python3 - dist/sbom/fer-edge.spdx.json <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
pkgs = doc.get("packages", [])
assert doc.get("spdxVersion") == "SPDX-2.3" and len(pkgs) > 100, "SBOM looks empty"
print(f"SBOM: {sys.argv[1]}: {len(pkgs)} packages", file=sys.stderr)
PY
    ;;
  *) echo "usage: $0 [check|sbom]" >&2; exit 2 ;;
esac
