#!/usr/bin/env bash
# Long FER2013 training runs on this machine's CPU, in installments across
# sessions (issue 33). A run trains under
# ${FER_EDGE_CACHE:-~/.cache/fer-edge}/runs/NAME; `sync` copies its log (the
# per-epoch curve with CPU seconds) and its checkpoints (last.pt, resumable,
# and best.pt, weights only) into tools/emotion_gcn/runs/NAME/, to be
# committed: a session on a new machine, whose cache is empty, resumes from
# them (the machines are not kept between sessions: a teacher's 3.7 CPU hours
# were lost that way on 2026-12-06). A width-32 run's pair is ~14 MB.
#
#   bash tools/long-train.sh start  [NAME]   start, or resume from last.pt (the cache's, else the committed one), at nice 19 in the background
#   bash tools/long-train.sh status [NAME]   epochs done, best PublicTest accuracy, CPU hours
#   bash tools/long-train.sh sync   [NAME]   copy curve and checkpoints into tools/emotion_gcn/runs/NAME/ (commit them)
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
  # A new machine: resume from the committed checkpoint and curve.
  if [ ! -f "$run_dir/last.pt" ] && [ -f "$log_dir/last.pt" ]; then
    for f in last.pt best.pt history.jsonl; do
      [ -f "$log_dir/$f" ] && cp "$log_dir/$f" "$run_dir/$f"
    done
    echo "long-train: $name resumes from the committed checkpoint ($log_dir/last.pt)"
  fi
  # The pid file must hold the trainer's own pid (`stop`, and `kill -STOP`
  # to pause it for a benchmark): `cd … && cmd &` would background the
  # whole list in a forked shell and record that shell instead.
  # shellcheck disable=SC2046
  (cd tools/emotion_gcn || exit 1
   ORT_DISABLE_TELEMETRY=1 nohup nice -n 19 "$venv/bin/python" -m emotion_gcn.fer2013 train \
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
    # The checkpoints of the last finished epoch (the trainer replaces them
    # atomically, so a running run can be synced).
    for f in last.pt best.pt; do
      [ -f "$run_dir/$f" ] && cp "$run_dir/$f" "$log_dir/$f.partial" && mv "$log_dir/$f.partial" "$log_dir/$f"
    done
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
