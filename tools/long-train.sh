#!/usr/bin/env bash
# Long FER2013 training runs on this machine's CPU, in installments across
# sessions (issue 33). A run's checkpoints live outside the work tree, under
# ${FER_EDGE_CACHE:-~/.cache/fer-edge}/runs/NAME, where a later session on the
# same machine finds them; its log (the command and the per-epoch curve with
# CPU seconds) is committed under tools/emotion_gcn/runs/NAME/, which is
# enough to start the run again from scratch on a new machine (seeded).
#
#   bash tools/long-train.sh start  [NAME]   start, or resume from last.pt, at nice 19 in the background
#   bash tools/long-train.sh status [NAME]   epochs done, best PublicTest accuracy, CPU hours
#   bash tools/long-train.sh sync   [NAME]   copy the curve into tools/emotion_gcn/runs/NAME/ (commit it)
#   bash tools/long-train.sh stop   [NAME]   stop it (resumable; an epoch in progress is lost)
#
# NAME picks tools/emotion_gcn/runs/NAME/args: one line of `fer2013 train`
# arguments (without --data/--out/--resume); `{runs}` in it stands for the
# runs folder (a student names its teacher's checkpoint as
# `--teacher {runs}/TEACHER/best.pt`). Default: the teacher run.
set -euo pipefail
cd "$(dirname "$0")/.."
verb=${1:-status}
name=${2:-teacher-w32-e30}
log_dir=tools/emotion_gcn/runs/$name
cache=${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}
run_dir=$cache/runs/$name
data=$cache/data/fer2013
[ -f "$log_dir/args" ] || { echo "long-train: $log_dir/args missing: write the run's trainer arguments there first" >&2; exit 2; }
pid_file=$run_dir/pid

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case "$verb" in
start)
  if running; then echo "long-train: $name already running (pid $(cat "$pid_file"))"; exit 0; fi
  if [ ! -d "$data/training" ] || [ ! -d "$data/publictest" ]; then
    src=${FER2013_DIR:-../shared/data/fer2013}
    mkdir -p "$data"
    tar -xzf "$src/fer2013-training.tar.gz" -C "$data"
    tar -xzf "$src/fer2013-publictest.tar.gz" -C "$data"
  fi
  venv=$(bash tools/setup-python.sh)
  mkdir -p "$run_dir"
  # shellcheck disable=SC2046
  (cd tools/emotion_gcn && ORT_DISABLE_TELEMETRY=1 nohup nice -n 19 "$venv/bin/python" -m emotion_gcn.fer2013 train \
     --data "$data" --out "$run_dir" --resume $(sed "s|{runs}|$cache/runs|g" "../../$log_dir/args") >>"$run_dir/train.log" 2>&1 &
   echo $! >"$pid_file")
  # With autogroup scheduling (sched_autogroup_enabled = 1, the default on
  # desktop kernels) `nice` only ranks processes within one session's group:
  # the run's group got an equal share against builds and tests. Lower the
  # group's own nice too.
  echo 19 >"/proc/$(cat "$pid_file")/autogroup" 2>/dev/null || true
  echo "long-train: $name started (pid $(cat "$pid_file")), log $run_dir/train.log"
  ;;
status|sync)
  hist=$run_dir/history.jsonl
  if [ "$verb" = sync ]; then
    [ -f "$hist" ] || { echo "long-train: no $hist yet" >&2; exit 1; }
    cp "$hist" "$log_dir/history.jsonl"
  fi
  [ -f "$hist" ] || hist=$log_dir/history.jsonl
  state=stopped; running && state="running (pid $(cat "$pid_file"))"
  python3 - "$hist" "$name" "$state" <<'PY'
import json, os, sys
hist, name, state = sys.argv[1:]
rows = [json.loads(l) for l in open(hist)] if os.path.exists(hist) else []
best = max(rows, key=lambda r: r["publictest_accuracy"], default=None)
cpu = sum(r.get("cpu_seconds", r["seconds"]) for r in rows) / 3600
print(json.dumps({"run": name, "state": state, "epochs_done": len(rows),
                  "curve": [r["publictest_accuracy"] for r in rows],
                  "best": best and {"epoch": best["epoch"], "accuracy": best["publictest_accuracy"]},
                  "cpu_hours": round(cpu, 2)}))
PY
  ;;
stop)
  if running; then kill "$(cat "$pid_file")"; echo "long-train: $name stopped"; else echo "long-train: $name not running"; fi
  ;;
*)
  echo "usage: tools/long-train.sh start|status|sync|stop [NAME]" >&2
  exit 2
  ;;
esac
