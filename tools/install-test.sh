#!/usr/bin/env bash
# Installs the amd64 package on this machine, checks that it works from the
# installed layout, then removes and purges it and checks nothing is left.
# Runs as root (CI does). Usage: tools/install-test.sh target/deb/fer-edge_*_amd64.deb
set -euo pipefail
deb=$(realpath "$1")
repo=$(realpath "$(dirname "$0")/..")
photo="$repo/tests/data/astronaut.png"
fail() { echo "install-test: FAIL: $*" >&2; exit 1; }

echo "install-test: $(basename "$deb") ($(du -h "$deb" | cut -f1))" >&2
dpkg-deb --contents "$deb" | awk '{print $6}' >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null

# Installed, not switched on: no camera daemon starts unasked.
unit=/usr/lib/systemd/system/fer-edge.service
[ -f "$unit" ] || fail "unit not installed"
[ ! -e /etc/systemd/system/multi-user.target.wants/fer-edge.service ] || fail "unit enabled on install"
systemd-analyze verify "$unit" || fail "systemd-analyze verify"
dpkg-query -W -f='${Conffiles}\n' fer-edge | grep -q /etc/fer-edge/fer-edge.toml || fail "config is not a conffile"

# The SBOM of the build ships with the package.
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["spdxVersion"]=="SPDX-2.3" and any(p["name"]=="rumqttd" for p in d["packages"])' \
  /usr/share/doc/fer-edge/fer-edge.spdx.json || fail "SBOM missing or empty"
/usr/bin/fer-edge --version
# `check` opens the source: a replay stands in for the camera. Without a
# camera, the installed config's /dev/video0 is reported (exit 69).
pan1="$repo/tests/data/sequences/pan1"
/usr/bin/fer-edge check --config /etc/fer-edge/fer-edge.toml --source "$pan1" || fail "check with the installed config"
if [ ! -e /dev/video0 ]; then
  rc=0; /usr/bin/fer-edge check --config /etc/fer-edge/fer-edge.toml >/dev/null 2>&1 || rc=$?
  [ "$rc" = 69 ] || fail "check without a camera exited $rc, not 69"
fi
# The package reads GStreamer sources: it declares GStreamer, and `check`
# opens a test pattern through it.
dpkg-query -W -f='${Depends}\n' fer-edge | grep -q libgstreamer1.0-0 || fail "Depends lacks libgstreamer1.0-0"
gstcfg=$(mktemp --suffix=.toml)
printf '[source]\nkind = "gstreamer"\npipeline = "videotestsrc num-buffers=300 ! video/x-raw,width=320,height=240"\n' > "$gstcfg"
out=$(/usr/bin/fer-edge check --config /etc/fer-edge/fer-edge.toml --config "$gstcfg") \
  || fail "check of a GStreamer test pattern"
grep -q '320x240' <<<"$out" || fail "check of a GStreamer test pattern: $out"
# A reader that stops early (a closed pipe) ends check with 74, not a panic.
set +o pipefail; /usr/bin/fer-edge check --config /etc/fer-edge/fer-edge.toml --source "$pan1" 2>"$gstcfg.err" | head -c1 >/dev/null; rc=${PIPESTATUS[0]}; set -o pipefail
grep -q panicked "$gstcfg.err" && fail "check panicked on a closed pipe: $(cat "$gstcfg.err")"
[ "$rc" = 74 ] || [ "$rc" = 0 ] || fail "check on a closed pipe exited $rc"
rm -f "$gstcfg" "$gstcfg.err"
# A bare analyze typed in any folder finds the installed models.
elsewhere=$(mktemp -d)
(cd "$elsewhere" && HOME="$elsewhere" /usr/bin/fer-edge analyze "$photo") > "$elsewhere/out.json" \
  || fail "analyze outside the repository"
grep -q '"expression":"happy"' "$elsewhere/out.json" || fail "analyze result: $(cat "$elsewhere/out.json")"
# A technician's calibration with the installed config (a replay stands in
# for the camera), and the daemon's config accepts the file it wrote.
# A bare `calibrate` reads /etc/fer-edge/fer-edge.toml.
(cd "$elsewhere" && HOME="$elsewhere" /usr/bin/fer-edge calibrate \
   --source "$repo/tests/data/sequences/pan1" --duration 3s --speed-runs 1 --out site) > "$elsewhere/cal.txt" \
  || fail "calibrate with the installed config: $(cat "$elsewhere/cal.txt")"
grep -q 'fer-edge run --config /etc/fer-edge/fer-edge.toml' "$elsewhere/site/calibration.toml" \
  || fail "calibrate did not read the installed config: $(head -5 "$elsewhere/site/calibration.toml")"
for f in calibration.toml report.json report.html; do
  [ -s "$elsewhere/site/$f" ] || fail "calibrate wrote no $f"
done
/usr/bin/fer-edge check --config /etc/fer-edge/fer-edge.toml --config "$elsewhere/site/calibration.toml" --source "$pan1" >/dev/null \
  || fail "check with the written calibration.toml"
# The drop-in's command line, as the README installs it (run → check).
dropin=/usr/share/fer-edge/systemd/fer-edge-calibration.conf
[ -f "$dropin" ] || fail "calibration drop-in not installed"
cp "$elsewhere/site/calibration.toml" /etc/fer-edge/calibration.toml
cmd=$(grep '^ExecStart=/' "$dropin" | cut -d= -f2- | sed 's/ run / check /')
$cmd --source "$pan1" >/dev/null || fail "the calibration drop-in's command: $cmd"
rm /etc/fer-edge/calibration.toml

# Two cameras side by side (issue 30.9): the template unit, one config per
# camera from the shipped example, one shared broker (mosquitto on a free
# port). Replays stand in for the cameras; each instance runs the template's
# own command line with %i filled in, as systemd would.
template=/usr/lib/systemd/system/fer-edge@.service
[ -f "$template" ] || fail "template unit fer-edge@.service not installed"
example=/usr/share/doc/fer-edge/examples/camera.toml
[ -f "$example" ] || fail "camera example config not installed"
systemd-analyze verify fer-edge@front.service || fail "systemd-analyze verify fer-edge@front.service"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mosquitto -p "$port" >/dev/null 2>&1 & broker=$!
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
pids=()
for cam in front:pan1 back:pan6; do
  name=${cam%%:*}; seq=${cam#*:}
  sed -e "s|^kind = \"v4l2\"|kind = \"replay\"\npath = \"$repo/tests/data/sequences/$seq\"\nloop = true|" \
      -e "s|^device_id = .*|device_id = \"$name\"|" -e "s|^port = 1883|port = $port|" \
      "$example" > "/etc/fer-edge/$name.toml"
  cmd=$(grep '^ExecStart=/' "$template" | cut -d= -f2- | sed "s/%i/$name/g")
  (cd /usr/share/fer-edge && exec $cmd) 2>"$elsewhere/$name.log" & pids+=($!)
done
timeout 60 mosquitto_sub -p "$port" -t 'fer-edge/+/faces/+/expression' -v -C 40 > "$elsewhere/both.txt" || true
kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true
kill "$broker"; wait "$broker" 2>/dev/null || true
for name in front back; do
  grep -q "^fer-edge/$name/faces/" "$elsewhere/both.txt" \
    || fail "camera $name published nothing beside the other: $(tail -3 "$elsewhere/$name.log")"
  rm "/etc/fer-edge/$name.toml"
done
rm -rf "$elsewhere"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq fer-edge >/dev/null
for p in /usr/bin/fer-edge /etc/fer-edge /usr/share/fer-edge /usr/share/doc/fer-edge \
         "$unit" "$template" /var/lib/private/fer-edge; do
  [ ! -e "$p" ] || fail "$p left behind after purge"
done
echo "install-test: installed, verified, ran, purged: ok" >&2
