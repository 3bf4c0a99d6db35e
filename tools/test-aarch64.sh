#!/usr/bin/env bash
# The aarch64 build, tested under emulation (qemu-aarch64-static; there is
# no binfmt_misc here, so binaries are started through qemu explicitly):
#   1. tools/build-aarch64.sh --tests (release binary + test harnesses,
#      linked for glibc 2.31, checked by tools/check-glibc.sh);
#   2. the library's unit tests, run under qemu;
#   3. `fer-edge analyze` on the test photos under qemu, compared with this
#      machine's x86-64 build: same faces, same labels, boxes within 1 px;
#   4. the default bundle's int8 twin and its float model on tract, whole
#      image on the 98 FER2013 faces of tests/data/fer2013-sample, under qemu
#      and on x86-64: the same label for each face (issue 32). qemu says
#      nothing about speed: `auto` times the twins on the board itself.
#      onnxruntime is left out here: PyPI's arm64 library (1.32.0, the
#      manylinux_2_28_aarch64 wheel whose sha256 tools/setup.sh pins) dies
#      with SIGSEGV as it starts under qemu-user, whatever -cpu (max,
#      neoverse-n1, cortex-a76/a72), before any model is read; it needs a
#      real arm64 machine.
# Not in CI (it costs a second full release build of tract for aarch64; see
# the README, "Build the packages"); run it before shipping an arm64 package.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
cache="${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}"
bin=$(bash tools/build-aarch64.sh --tests)
# The binary links GStreamer: under qemu its arm64 libraries come from the
# sysroot tools/build-aarch64.sh unpacked (a board has them installed).
sysroot="$cache/sysroot-arm64"
qemu() {
  qemu-aarch64-static -E "LD_LIBRARY_PATH=$sysroot/lib/aarch64-linux-gnu:$sysroot/usr/lib/aarch64-linux-gnu" "$@"
}
file "$bin" | grep -q 'ARM aarch64' || { echo "test-aarch64: $bin is not an aarch64 binary" >&2; exit 1; }
qemu "$bin" --version

tests=$(cat "${FER_EDGE_AARCH64_TARGET:-$cache/target-aarch64}/aarch64-unit-tests.path")
file "$tests" | grep -q 'ARM aarch64' || { echo "test-aarch64: $tests is not an aarch64 test binary" >&2; exit 1; }
echo "test-aarch64: library unit tests under qemu" >&2
qemu "$tests" --test-threads 2

photos=(tests/data/astronaut.png tests/data/group_t1.jpg tests/data/frames640/one_face.png tests/data/frames640/six_faces.png tests/data/coffee.png)
cargo build --release --locked >&2
x86=$(mktemp) arm=$(mktemp)
"${CARGO_TARGET_DIR:-target}/release/fer-edge" analyze --backend tract "${photos[@]}" > "$x86"
qemu "$bin" analyze --backend tract "${photos[@]}" > "$arm"
python3 - "$x86" "$arm" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b), (len(a), len(b))
faces = 0
for x, y in zip(a, b):
    assert len(x["faces"]) == len(y["faces"]), (x["image"], len(x["faces"]), len(y["faces"]))
    for f, g in zip(x["faces"], y["faces"]):
        assert f["expression"] == g["expression"], (x["image"], f["expression"], g["expression"])
        assert all(abs(p - q) < 1.0 for p, q in zip(f["bbox"], g["bbox"])), (x["image"], f["bbox"], g["bbox"])
        assert abs(f["valence"] - g["valence"]) < 1e-3 and abs(f["arousal"] - g["arousal"]) < 1e-3
        faces += 1
print(f"test-aarch64: analyze under qemu matches x86-64 on {len(a)} photos, {faces} faces: ok")
PY

x86_csv=$(mktemp --suffix .csv) arm_csv=$(mktemp --suffix .csv)
twins=(eval tests/data/fer2013-sample --whole-image --backend tract --precision fp32,int8)
"${CARGO_TARGET_DIR:-target}/release/fer-edge" "${twins[@]}" --predictions "$x86_csv" >/dev/null
qemu "$bin" "${twins[@]}" --predictions "$arm_csv" >/dev/null
python3 - "$x86_csv" "$arm_csv" <<'PY'
import csv, sys
def rows(p):
    with open(p) as f:
        return [(r["model"], f'{r["engine"]} {r["precision"]}', r["image"], r["prediction"]) for r in csv.DictReader(f)]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert len(a) == len(b) == 2 * 98, (len(a), len(b))
runs = {}
for x, y in zip(a, b):
    assert x[:3] == y[:3], (x, y)
    runs.setdefault(x[1], []).append(x[3] == y[3])
for run, same in runs.items():
    print(f"test-aarch64: {run}: {sum(same)}/{len(same)} labels as on x86-64")
    assert all(same), run
PY

# The arm64 package, unpacked: the binary finds its config's models in the
# installed layout (<bin>/../share/fer-edge) from any folder.
deb=$(ls target/deb/fer-edge_*_arm64.deb 2>/dev/null | tail -n 1 || true)
if [ -n "$deb" ]; then
  root=$(mktemp -d)
  dpkg-deb -x "$deb" "$root"
  dpkg-deb -f "$deb" Depends | grep -q 'libc6 (>= 2.31)' || { echo "test-aarch64: $deb Depends: $(dpkg-deb -f "$deb" Depends)" >&2; exit 1; }
  (cd "$root" && qemu "$root/usr/bin/fer-edge" check --config "$root/etc/fer-edge/fer-edge.toml" --source "$repo/tests/data/sequences/pan1" >/dev/null)
  (cd /tmp && qemu "$root/usr/bin/fer-edge" analyze "$repo/tests/data/astronaut.png") | grep -q '"expression":"happy"'
  echo "test-aarch64: $(basename "$deb") runs from its unpacked layout: ok"
  rm -rf "$root"
fi
