#!/usr/bin/env bash
# Soak test (not in CI): runs the daemon on a looping replay with its
# embedded broker for a while, with MQTT clients coming and going, and
# reports memory and file descriptors over time.
#
#   tools/soak.sh [MINUTES=60] [SEQUENCE=pan6] [OUT=dist/soak]
#
# Writes OUT/samples.csv (one line per 30 s: minute, RSS MiB, peak RSS MiB,
# open fds, threads, frames processed) and OUT/summary.json; exits 1 if RSS
# or fds grew in the second half of the run (a leak), or the daemon died.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-60}"; seq="${2:-pan6}"; out="${3:-dist/soak}"
bin="${FER_EDGE_BIN:-${CARGO_TARGET_DIR:-target}/release/fer-edge}"
[ -x "$bin" ] || cargo build --release --locked >&2
mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$out/soak.toml" <<TOML
[source]
path = "tests/data/sequences/$seq"
loop = true
pace = true
fps = 15.0
[mqtt]
device_id = "soak"
stats_interval_s = 30.0
[mqtt.broker]
listen = "127.0.0.1:$port"
TOML
MALLOC_ARENA_MAX=2 FER_EDGE_LOG=warn "$bin" run --config "$out/soak.toml" 2> "$out/daemon.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 5
echo "minute,rss_mib,hwm_mib,fds,threads,frames" > "$out/samples.csv"
end=$(( $(date +%s) + minutes * 60 ))
start=$(date +%s)
while [ "$(date +%s)" -lt "$end" ]; do
  kill -0 $pid 2>/dev/null || { echo "soak: the daemon died" >&2; exit 1; }
  # Clients come and go: a subscriber takes a few messages, a v5 one the status.
  timeout 5 mosquitto_sub -p "$port" -t 'fer-edge/#' -C 20 >/dev/null 2>&1 || true
  timeout 5 mosquitto_sub -p "$port" -V mqttv5 -t 'fer-edge/soak/status' -C 1 >/dev/null 2>&1 || true
  frames=$(timeout 35 mosquitto_sub -p "$port" -t 'fer-edge/soak/stats' -C 1 2>/dev/null \
           | python3 -c 'import json,sys; print(json.load(sys.stdin)["frames_processed"])' 2>/dev/null || echo "")
  rss=$(awk '/VmRSS/{print $2/1024}' /proc/$pid/status)
  hwm=$(awk '/VmHWM/{print $2/1024}' /proc/$pid/status)
  fds=$(ls /proc/$pid/fd | wc -l)
  thr=$(awk '/Threads/{print $2}' /proc/$pid/status)
  min=$(python3 -c "print(round(($(date +%s)-$start)/60,1))")
  echo "$min,$rss,$hwm,$fds,$thr,$frames" >> "$out/samples.csv"
done
kill -TERM $pid; wait $pid || true
trap - EXIT
python3 - "$out" <<'PY'
import csv, json, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
f = lambda k: [float(r[k]) for r in rows]
half = len(rows) // 2
rss, fds = f("rss_mib"), f("fds")
s = {
    "samples": len(rows),
    "minutes": float(rows[-1]["minute"]),
    "rss_mib_first": rss[0], "rss_mib_last": rss[-1], "rss_mib_max": max(rss),
    "rss_mib_second_half_growth": round(rss[-1] - min(rss[half:]), 2),
    "peak_rss_mib": f("hwm_mib")[-1],
    "fds_first": fds[0], "fds_last": fds[-1], "fds_max": max(fds),
    "threads_last": f("threads")[-1],
    "frames_processed_last": rows[-1]["frames"],
}
s["leak_suspected"] = s["rss_mib_second_half_growth"] > 5 or fds[-1] > max(fds[:half] or fds)
json.dump(s, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(s, indent=1))
sys.exit(1 if s["leak_suspected"] else 0)
PY
