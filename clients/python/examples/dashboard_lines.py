"""Feeds a dashboard without Home Assistant: one line per summary and per
event, as JSON lines (default) or CSV, on stdout or appended to a file.

usage: dashboard_lines.py [--host H] [--port P] [--device D] [--format jsonl|csv] [--out FILE] [--seconds N]
"""
import argparse
import csv
import json
import sys
import time
from dataclasses import asdict

from fer_edge_client import Event, Summary, connection_args, from_args

COLUMNS = ["kind", "timestamp", "faces", "dominant_expression", "mean_valence", "mean_arousal",
           "track_id", "event", "expression", "previous_expression"]


def row(msg) -> dict:
    if isinstance(msg, Summary):
        return {"kind": "summary", "timestamp": msg.timestamp, "faces": msg.faces,
                "dominant_expression": msg.dominant_expression,
                "mean_valence": msg.mean_valence, "mean_arousal": msg.mean_arousal}
    return {"kind": "event", "timestamp": msg.timestamp, "track_id": msg.track_id, "event": msg.type,
            "expression": msg.expression or msg.dominant_expression,
            "previous_expression": msg.previous_expression}


def main() -> None:
    a = connection_args(argparse.ArgumentParser(description=__doc__.split("usage:")[0].strip(), formatter_class=argparse.RawDescriptionHelpFormatter))
    a.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    a.add_argument("--out", help="append to this file instead of stdout")
    args = a.parse_args()
    out = open(args.out, "a", newline="") if args.out else sys.stdout
    writer = csv.DictWriter(out, COLUMNS) if args.format == "csv" else None
    if writer and (not args.out or out.tell() == 0):
        writer.writeheader()

    def on_message(topic, msg):
        if isinstance(msg, (Summary, Event)):
            r = row(msg)
            if writer:
                writer.writerow(r)
            else:
                out.write(json.dumps({**r, "message": asdict(msg)}) + "\n")
            out.flush()

    c = from_args(args)
    c.on_message = on_message
    c.loop_start()
    end = time.time() + args.seconds if args.seconds else float("inf")
    try:
        while time.time() < end:
            time.sleep(min(1.0, max(0.0, end - time.time())))
    except KeyboardInterrupt:
        pass
    c.stop()


if __name__ == "__main__":
    main()
