"""A ROS 2 camera driver on Eclipse Cyclone DDS (not ROS itself), as a
robot's camera node looks on the wire: ROS 2's topic naming (`rt/...`) and
type naming (`sensor_msgs::msg::dds_::Image_`), sensor_msgs/Image and
sensor_msgs/CompressedImage written out as IDL structs field for field.

It plays a folder of JPEG frames on TOPIC: as raw `bgr8` images with
best-effort QoS (SensorDataQoS, what most camera drivers use), or, on a
topic ending in /compressed, as the JPEG bytes with reliable QoS (what
image_transport's compressed plugin publishes). Each header carries
stamp = STAMP0 + i / FPS and FRAME_ID. With --huge, the first message is
an Image declaring 20000x20000 pixels with no data (a reader must refuse it
on its header alone).

usage: ros2_camera.py DOMAIN TOPIC FOLDER FPS STAMP0 FRAME_ID [--huge] [--wait S]

It waits up to --wait seconds (default 10) for a reader to match before
the first frame, then plays every frame once and exits; prints one line:
{"published": N, "matched": true|false}. Uses the loopback interface only.
"""
import json
import os
import sys
import time
from dataclasses import dataclass

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import sequence, uint8, uint32
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ros2_common import LOCALHOST, Header, Time  # beside this script


@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: uint32
    width: uint32
    encoding: str
    is_bigendian: uint8
    step: uint32
    data: sequence[uint8]


@dataclass
class CompressedImage(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header
    format: str
    data: sequence[uint8]


def header(t, frame_id):
    sec = int(t)
    return Header(stamp=Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000), frame_id=frame_id)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    huge = "--huge" in sys.argv
    wait = 10.0
    if "--wait" in sys.argv:
        wait = float(sys.argv[sys.argv.index("--wait") + 1])
        args.remove(sys.argv[sys.argv.index("--wait") + 1])
    domain, topic, folder, fps, stamp0, frame_id = args
    domain, fps, stamp0 = int(domain), float(fps), float(stamp0)
    os.environ["CYCLONEDDS_URI"] = LOCALHOST
    dp = DomainParticipant(domain)
    compressed = topic.rstrip("/").endswith("/compressed")
    if compressed:
        qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(5))
        writer = DataWriter(dp, Topic(dp, "rt" + topic, CompressedImage), qos=qos)
    else:
        qos = Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(5))
        writer = DataWriter(dp, Topic(dp, "rt" + topic, Image), qos=qos)
    deadline = time.time() + wait
    matched = False
    while time.time() < deadline:
        if writer.get_matched_subscriptions():
            matched = True
            break
        time.sleep(0.05)
    # Discovery of the reader's endpoint completes on both sides.
    time.sleep(0.5)
    frames = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))
    n = 0
    if huge and not compressed:
        writer.write(Image(header=header(stamp0 - 1.0, frame_id), height=20000, width=20000,
                           encoding="rgb8", is_bigendian=0, step=60000, data=[]))
        n += 1
    start = time.time()
    for i, name in enumerate(frames):
        due = start + i / fps
        time.sleep(max(0.0, due - time.time()))
        jpeg = open(os.path.join(folder, name), "rb").read()
        h = header(stamp0 + i / fps, frame_id)
        if compressed:
            writer.write(CompressedImage(header=h, format="jpeg", data=list(jpeg)))
        else:
            from PIL import Image as PILImage
            import io
            img = PILImage.open(io.BytesIO(jpeg)).convert("RGB")
            w, hgt = img.size
            bgr = img.tobytes("raw", "BGR")
            writer.write(Image(header=h, height=hgt, width=w, encoding="bgr8", is_bigendian=0,
                               step=w * 3, data=list(bgr)))
        n += 1
    # Let the last samples leave before the participant goes.
    time.sleep(0.5)
    print(json.dumps({"published": n, "matched": matched}), flush=True)


if __name__ == "__main__":
    main()
