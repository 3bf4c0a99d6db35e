"""The Python client against the real daemon: fer-edge (`FER_EDGE_BIN`, or
the debug build) replaying the repository's photo sequences, publishing
to a real mosquitto; nothing is mocked."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from dataclasses import fields

import pytest

from fer_edge_client import Client, Event, Expression, Source, Summary, Tracked, Tracks, parse

ROOT = pathlib.Path(__file__).resolve().parents[3]
HERE = pathlib.Path(__file__).resolve().parent


def fer_edge_bin() -> str:
    env = os.environ.get("FER_EDGE_BIN")
    if env:
        return env
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/fer-edge/target"))
    for p in (pathlib.Path(target) / "debug/fer-edge", ROOT / "target/debug/fer-edge"):
        if p.exists():
            return str(p)
    pytest.fail("no fer-edge binary: build it (cargo build) or set FER_EDGE_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, seconds: float, what: str):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Mosquitto:
    """mosquitto from Debian on a free port, without persistence."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.conf = tmp_path / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n")
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False
        wait(up, 10, "mosquitto")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def mosquitto(tmp_path):
    m = Mosquitto(tmp_path)
    yield m
    m.stop()


def daemon(tmp_path, port: int, sequence: str, live: bool) -> subprocess.Popen:
    cfg = tmp_path / "fer-edge.toml"
    cfg.write_text(f"""
[source]
kind = "replay"
path = "{ROOT}/tests/data/sequences/{sequence}"
fps = 15.0
pace = {str(live).lower()}
loop = {str(live).lower()}

[detector]
model_dir = "{ROOT}/models/mtcnn"

[emotion]
model = "{ROOT}/models/fer-minixception"

[mqtt]
host = "127.0.0.1"
port = {port}
device_id = "py-kiosk"
reconnect_max_backoff_s = 0.5
[mqtt.broker]
embedded = false
""")
    env = dict(os.environ, FER_EDGE_LOG="warn")
    return subprocess.Popen([fer_edge_bin(), "run", "--config", str(cfg)], cwd=ROOT, env=env)


def client(port: int) -> Client:
    return Client("127.0.0.1", port, device="py-kiosk").loop_start()


def test_the_dataclasses_follow_the_schema_and_parse_picks_them_by_topic():
    schema = json.loads((ROOT / "schema/mqtt.schema.json").read_text())
    for cls, name in ((Expression, "expression"), (Event, "event"), (Tracked, "tracked"), (Summary, "summary"),
                      (Source, "source")):
        ours = {f.name for f in fields(cls)} - {"extra"}
        theirs = set(schema["$defs"][name]["properties"])
        assert ours == theirs, f"{name}: only ours {ours - theirs}, only the schema's {theirs - ours}"
    assert parse("fer-edge/k/status", b"online") == "online"
    assert parse("fer-edge/k/faces/tracked", b"") is None, "a cleared retained message"
    t = parse("fer-edge/k/faces/tracked", b'{"schema_version":"1.4","timestamp":1.0,"track_ids":[3],"new_key":1}')
    assert isinstance(t, Tracked) and t.track_ids == [3] and t.extra == {"new_key": 1}
    src = parse("fer-edge/k/source", b'{"schema_version":"1.4","timestamp":1.0,"state":"unavailable","reason":"no route"}')
    assert isinstance(src, Source) and src.state == "unavailable" and src.reason == "no route"


def test_tracks_rebuild_every_face_of_a_group_replay(tmp_path, mosquitto):
    broker = mosquitto.port
    c = client(broker)
    wait(lambda: c.mqtt.is_connected(), 10, "the client to connect")
    time.sleep(0.3)
    d = daemon(tmp_path, broker, "pan6", live=False)
    assert d.wait(timeout=240) == 0
    wait(lambda: c.tracks.status == "offline", 10, "offline")
    c.stop()
    t = c.tracks
    assert t.present == {}, "every face ended"
    assert len(t.gone) == 6, [f.track_id for f in t.gone]
    for f in t.gone:
        assert not f.adopted, f"face {f.track_id}: its new event was seen"
        assert f.end is not None and f.end.frames >= 20, f
        assert f.readings >= 20 and f.latest.frame_width == 640
    assert any(f.end.dominant_expression == "happy" for f in t.gone)
    assert t.summary is not None and t.summary.faces == 0


def test_a_client_that_joins_late_and_reconnects_keeps_each_face_once(tmp_path, mosquitto):
    broker = mosquitto.port
    d = daemon(tmp_path, broker, "pan1", live=True)
    try:
        # Joins after the face was announced: the retained track list adopts it.
        time.sleep(4)
        c = client(broker)
        wait(lambda: any(f.readings for f in c.tracks.present.values()), 30, "a reading")
        (face,) = c.tracks.present.values()
        assert face.adopted
        assert c.tracks.summary is not None and c.tracks.summary.faces == 1
        # The broker restarts and forgets everything (no persistence): both
        # sides reconnect, the daemon publishes its retained state again,
        # and the client still knows one face, the same one.
        mosquitto.stop()
        time.sleep(1)
        mosquitto.start()
        before = face.readings
        wait(lambda: face.readings > before + 5, 30, "readings after the reconnect")
        assert list(c.tracks.present) == [face.track_id] and c.tracks.gone == []

        # The examples, run as a user would, against the same daemon.
        examples = ROOT / "clients/python/examples"
        args = ["--port", str(broker), "--device", "py-kiosk", "--seconds", "3"]
        room = subprocess.run([sys.executable, examples / "print_room.py", *args], capture_output=True, text=True, timeout=30)
        assert room.returncode == 0, room.stderr
        assert "1 present: " in room.stdout and "happy" in room.stdout, room.stdout
        lines = subprocess.run([sys.executable, examples / "dashboard_lines.py", *args], capture_output=True, text=True, timeout=30)
        assert lines.returncode == 0, lines.stderr
        rows = [json.loads(l) for l in lines.stdout.splitlines()]
        assert rows and rows[0]["kind"] == "summary" and rows[0]["faces"] == 1, rows[:2]
        csv_out = subprocess.run([sys.executable, examples / "dashboard_lines.py", *args, "--format", "csv"], capture_output=True, text=True, timeout=30)
        assert csv_out.stdout.splitlines()[0].startswith("kind,timestamp,faces"), csv_out.stdout

        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=10) == 0
        wait(lambda: c.tracks.status == "offline", 10, "offline")
        assert c.tracks.present == {}
        assert [f.track_id for f in c.tracks.gone] == [face.track_id]
        assert face.end is not None and face.end.type == "end"
        c.stop()
    finally:
        d.kill()
        d.wait()


def test_the_ros2_bridge_converts_to_hri_msgs_fields():
    sys.path.insert(0, str(ROOT / "clients/python/examples"))
    import ros2_bridge as b

    e = Expression(schema_version="1.4", track_id=7, timestamp=1.0, frame_time=0.0, frame_seq=0,
                   expression="fear", confidence=0.8, valence=-0.5, arousal=0.6, probabilities={},
                   bbox=[64, 48, 64, 96], bbox_normalized=[0.1, 0.1, 0.1, 0.2], frame_width=640,
                   frame_height=480, model="m", va_source="model", calibrated=False)
    assert b.face_id(7) == "f7"
    assert b.expression_fields(e) == {"expression": "scared", "valence": -0.5, "arousal": 0.6, "confidence": 0.8}
    r = b.roi_fields(e)
    assert r["xmin"] == pytest.approx(0.1) and r["ymax"] == pytest.approx(0.3)


def _payload(kind: str, **over) -> bytes:
    base = {
        "tracked": {"schema_version": "1.4", "run": "00000000000000aa", "timestamp": 10.0, "track_ids": [5]},
        "new": {"schema_version": "1.4", "run": "00000000000000aa", "type": "new", "track_id": 5, "timestamp": 9.0},
    }[kind]
    return json.dumps({**base, **over}).encode()


HOSTILE = [
    ("events", b"\xff\xfe garbage"),
    ("events", b'{"garbage":1}'),
    ("events", b'{"schema_version":"1.4","type":"new","timestamp":1.0}'),
    ("faces/tracked", b'{"schema_version":"1.4","timestamp":1.0,"track_ids":null}'),
    ("status", b"\xff\xfeonline"),
    ("events", b'{"schema_version":"1.4","type":"new","track_id":NaN,"timestamp":1.0}'),
    ("events", b'{"schema_version":"1.4","type":"new","track_id":3,"timestamp":NaN}'),
    ("events", b'{"schema_version":"1.4","type":"new","track_id":"x","timestamp":1.0,"pad":"' + b"a" * (8 << 20) + b'"}'),
    ("events", b"[" * 100_000 + b"]" * 100_000),
    ("summary", b'{"schema_version":"1.4","timestamp":1.0,"faces":1,"tracks":[7],"dominant_expression":null,"mean_valence":null,"mean_arousal":null}'),
    ("faces/9/expression", b'{"schema_version":"1.4","track_id":9}'),
    ("faces/tracked", b'{"schema_version":"1.4","timestamp":1.0,"track_ids":["a",{}]}'),
]


def test_every_hostile_payload_is_refused_with_a_reason_and_the_client_reads_on(mosquitto, caplog):
    import paho.mqtt.client as mqtt

    c = client(mosquitto.port)
    wait(lambda: c.mqtt.is_connected(), 10, "the client to connect")
    time.sleep(0.3)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    survived = []
    with caplog.at_level("WARNING", logger="fer_edge_client"):
        for i, (topic, payload) in enumerate(HOSTILE):
            pub.publish(f"fer-edge/py-kiosk/{topic}", payload, qos=1).wait_for_publish(10)
            # After each hostile message a good one must still arrive.
            pub.publish("fer-edge/py-kiosk/events", _payload("new", track_id=100 + i, timestamp=100.0 + i), qos=1).wait_for_publish(10)
            wait(lambda: 100 + i in c.tracks.present, 10, f"a good message after hostile payload {i}")
            survived.append(i)
    pub.loop_stop()
    c.stop()
    assert survived == list(range(len(HOSTILE)))
    assert sum(c.refused.values()) == len(HOSTILE), c.refused
    assert c.mqtt._thread is None or not c.mqtt._thread.is_alive()  # stopped by us, not by an exception
    assert "refused a message" in caplog.text


def test_a_callback_that_raises_does_not_stop_the_client(mosquitto):
    import paho.mqtt.client as mqtt

    c = client(mosquitto.port)
    wait(lambda: c.mqtt.is_connected(), 10, "the client to connect")
    time.sleep(0.3)
    c.tracks.on_new = lambda face: 1 / 0
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    for tid in (1, 2):
        pub.publish("fer-edge/py-kiosk/events", _payload("new", track_id=tid), qos=1).wait_for_publish(10)
    wait(lambda: 2 in c.tracks.present, 10, "the second face despite the first callback's exception")
    pub.loop_stop()
    c.stop()


def test_tracks_never_revive_an_ended_face_and_keep_a_bounded_past():
    t = Tracks(max_gone=3)
    t.apply(parse("fer-edge/k/events", _payload("new", track_id=1)))
    t.apply(parse("fer-edge/k/events", _payload("new", track_id=1, type="end", timestamp=11.0)))
    late = parse("fer-edge/k/faces/1/expression", json.dumps({
        "schema_version": "1.4", "run": "00000000000000aa", "track_id": 1, "timestamp": 10.5, "frame_time": 0.0,
        "frame_seq": 3, "expression": "happy", "confidence": 0.9, "valence": 0.5, "arousal": 0.1,
        "probabilities": {}, "bbox": [0, 0, 1, 1], "bbox_normalized": [0, 0, 0.1, 0.1], "frame_width": 10,
        "frame_height": 10, "model": "m", "va_source": "derived", "calibrated": False}).encode())
    t.apply(late)
    assert t.present == {} and [f.track_id for f in t.gone] == [1], "a late expression does not bring the face back"
    for tid in range(2, 12):
        t.apply(parse("fer-edge/k/events", _payload("new", track_id=tid)))
        t.apply(parse("fer-edge/k/events", _payload("new", track_id=tid, type="end")))
    assert [f.track_id for f in t.gone] == [9, 10, 11]


def test_a_new_run_ends_the_old_runs_faces_and_a_stale_list_ends_nobody():
    t = Tracks()
    t.apply(parse("fer-edge/k/events", _payload("new", track_id=5, timestamp=20.0)))
    # A retained list from before the face was announced (republished after
    # a broker restart) must not end it.
    t.apply(parse("fer-edge/k/faces/tracked", _payload("tracked", track_ids=[], timestamp=15.0)))
    assert list(t.present) == [5]
    # The daemon crashed and started again: a new run, ids never reused.
    t.apply(parse("fer-edge/k/faces/tracked", _payload("tracked", run="00000000000000bb", track_ids=[7], timestamp=30.0)))
    assert list(t.present) == [7] and t.run == "00000000000000bb"
    (old,) = t.gone
    assert old.track_id == 5 and old.end is None and old.end_reason == "restart"
    # A late message of the old run is ignored.
    t.apply(parse("fer-edge/k/events", _payload("new", track_id=6, timestamp=21.0)))
    assert list(t.present) == [7]
    t.apply("offline")
    assert t.present == {} and t.gone[-1].end_reason == "offline"


def test_broker_flaps_end_no_face_falsely_and_adopt_none_twice(tmp_path, mosquitto):
    # Issue 29.7: with mosquitto restarted every 2 s a track got `new`, an
    # end without a summary, then was adopted again. The flaps start before
    # the daemon, so that the track list changes ([] then [id]) while
    # sessions are being reset and queued lists re-sent.
    broker = mosquitto.port
    c = client(broker)
    seen = []
    d = None
    try:
        for i in range(14):
            if i == 1:
                d = daemon(tmp_path, broker, "pan1", live=True)
            mosquitto.stop()
            time.sleep(0.3 + 0.1 * (i % 3))
            mosquitto.start()
            time.sleep(1.2 + 0.2 * (i % 4))
            seen.extend(t for t in c.tracks.present if t not in seen)
        wait(lambda: any(f.readings > 5 for f in c.tracks.present.values()), 30, "readings after the flaps")
        seen.extend(t for t in c.tracks.present if t not in seen)
        assert len(seen) == 1, f"one person, one face: {seen}"
        assert list(c.tracks.present) == seen, c.tracks.present
        assert c.tracks.gone == [], [(f.track_id, f.end_reason) for f in c.tracks.gone]
        c.stop()
    finally:
        if d is not None:
            d.kill()
            d.wait()


def test_a_wrong_device_is_named_with_the_devices_the_broker_has(mosquitto, caplog):
    import paho.mqtt.client as mqtt

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    pub.publish("fer-edge/lobby/status", b"online", qos=1, retain=True).wait_for_publish(5)
    pub.loop_stop()
    c = Client("127.0.0.1", mosquitto.port, device="kiosk-1").loop_start(hint_after=1.5)
    wait(lambda: "devices there: lobby" in caplog.text, 10, "the hint naming lobby")
    assert "--device" in caplog.text
    assert c.tracks.status is None, "another device's status is not ours"
    c.stop()
