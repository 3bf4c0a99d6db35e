"""Prints who is in front of a fer-edge device and how they look, once a
second: one line per face (smoothed expression, valence, arousal), and
each face's arrival, expression changes and departure as they happen.

usage: print_room.py [--host H] [--port P] [--device D] [--prefix P] [--seconds N]
"""
import argparse
import time

from fer_edge_client import connection_args, from_args


def main() -> None:
    args = connection_args(argparse.ArgumentParser(description=__doc__.split("usage:")[0].strip(), formatter_class=argparse.RawDescriptionHelpFormatter)).parse_args()
    c = from_args(args)
    t = c.tracks
    t.on_new = lambda f: print(f"+ face {f.track_id}" + (" (already there)" if f.adopted else ""), flush=True)
    t.on_end = lambda f: print(
        f"- face {f.track_id}"
        + (f": {f.end.duration_s:.1f} s, mostly {f.end.dominant_expression}" if f.end else " (left while we were away)"),
        flush=True,
    )
    c.loop_start()
    end = time.time() + args.seconds if args.seconds else float("inf")
    try:
        while time.time() < end:
            time.sleep(1)
            faces = [f for f in t.present.values() if f.latest]
            line = ", ".join(
                f"{f.track_id}: {f.latest.expression} (V {f.latest.valence:+.2f}, A {f.latest.arousal:+.2f})"
                for f in faces
            )
            print(f"[{t.status or '?'}] {len(t.present)} present{': ' + line if line else ''}", flush=True)
    except KeyboardInterrupt:
        pass
    c.stop()


if __name__ == "__main__":
    main()
