"""A ROS4HRI subscriber on Eclipse Cyclone DDS (not ROS itself), as a ROS 2
node's DDS layer would see fer-edge: ROS 2's topic naming (`rt/...`) and
type naming (`pkg::msg::dds_::Name_`), the hri_msgs definitions written out
as IDL structs field for field.

Like libhri, it reads /humans/faces/tracked and subscribes to each listed
face's `expression` and `roi` topics. Prints one JSON line per sample:
{"topic": ..., "data": {...}}.

usage: ros2_sub.py DOMAIN_ID SECONDS [localhost|subnet]

`localhost` configures Cyclone DDS as rmw_cyclonedds does for
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: the loopback interface only, no
multicast, unicast discovery of peers on 127.0.0.1.
"""
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import float32, sequence
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ros2_common import LOCALHOST, Header  # beside this script


@dataclass
class IdsList(IdlStruct, typename="hri_msgs::msg::dds_::IdsList_"):
    header: Header
    ids: sequence[str]


@dataclass
class Expression(IdlStruct, typename="hri_msgs::msg::dds_::Expression_"):
    header: Header
    expression: str
    valence: float32
    arousal: float32
    confidence: float32


@dataclass
class NormalizedRegionOfInterest2D(
    IdlStruct, typename="hri_msgs::msg::dds_::NormalizedRegionOfInterest2D_"
):
    header: Header
    xmin: float32
    ymin: float32
    xmax: float32
    ymax: float32
    c: float32


def main():
    domain, seconds = int(sys.argv[1]), float(sys.argv[2])
    if len(sys.argv) > 3 and sys.argv[3] == "localhost":
        os.environ["CYCLONEDDS_URI"] = LOCALHOST
    dp = DomainParticipant(domain)
    # ROS 2's default subscription QoS (reliable, volatile, depth 10) for
    # per-face topics; libhri reads the tracked list as latched.
    default = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(10))
    latched = Qos(
        Policy.Reliability.Reliable(duration(seconds=1)),
        Policy.Durability.TransientLocal,
        Policy.History.KeepLast(1),
    )
    readers = {"/humans/faces/tracked": DataReader(dp, Topic(dp, "rt/humans/faces/tracked", IdsList), qos=latched)}
    end = time.time() + seconds
    while time.time() < end:
        for name, reader in list(readers.items()):
            for sample in reader.take(32):
                print(json.dumps({"topic": name, "data": asdict(sample)}), flush=True)
                if name.endswith("/tracked"):
                    for face in sample.ids:
                        for kind, cls in (("expression", Expression), ("roi", NormalizedRegionOfInterest2D)):
                            t = f"/humans/faces/{face}/{kind}"
                            if t not in readers:
                                readers[t] = DataReader(dp, Topic(dp, "rt" + t, cls), qos=default)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
