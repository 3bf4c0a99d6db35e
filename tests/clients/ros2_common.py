"""What the ROS 2 test clients share: Cyclone DDS confined to loopback (as
rmw_cyclonedds is for ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) and the
std_msgs/builtin_interfaces types every message embeds, as IDL structs with
ROS 2's DDS type names."""
from dataclasses import dataclass

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import int32, uint32

LOCALHOST = (
    "<CycloneDDS><Domain Id=\"any\"><General>"
    "<Interfaces><NetworkInterface address=\"127.0.0.1\"/></Interfaces>"
    "<AllowMulticast>false</AllowMulticast></General>"
    "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
    "<MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>"
    "<Peers><Peer address=\"localhost\"/></Peers></Discovery>"
    "</Domain></CycloneDDS>"
)


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32
    nanosec: uint32


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time
    frame_id: str
