#!/usr/bin/env bash
# The main job, end to end: build fer-edge, run the daemon with the shipped
# config (a replayed 640x480 sequence of six people at 15 frames/s, looping
# as a camera would deliver it, the embedded MQTT broker on 127.0.0.1:1883), print
# every message a subscriber receives, and after DEMO_SECONDS (default 8)
# stop the daemon with SIGTERM as systemd would: every track ends, then
# `offline`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
port=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"/\1/p' config/fer-edge.toml)
"${CARGO_TARGET_DIR:-target}/release/fer-edge" run --config config/fer-edge.toml &
daemon=$!
for _ in $(seq 200); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  kill -0 "$daemon" 2>/dev/null || { wait "$daemon"; exit $?; }
  sleep 0.1
done
mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'fer-edge/#' &
sub=$!
status=0
sleep "${DEMO_SECONDS:-8}"
kill -TERM "$daemon" 2>/dev/null || true
wait "$daemon" || status=$?
sleep 0.5
kill "$sub" 2>/dev/null || true
echo "fer-edge exited with $status" >&2
exit "$status"
