"""A ROS 2 node that republishes fer-edge's MQTT messages as ROS4HRI
(REP-155) topics, for robots that prefer a bridge to fer-edge's own
`[ros2]` output (e.g. to add their own namespace or TF frame handling).

Publishes /humans/faces/tracked (hri_msgs/IdsList), and per face
/humans/faces/<id>/expression (hri_msgs/Expression) and
/humans/faces/<id>/roi (hri_msgs/NormalizedRegionOfInterest2D); face ids
are "f<track id>", as fer-edge's own output names them.

Needs a ROS 2 installation with rclpy and hri_msgs (ros-<distro>-hri-msgs):
  source /opt/ros/humble/setup.bash
  python3 ros2_bridge.py --host 127.0.0.1 --device kiosk-1 --frame-id camera

The conversion (`expression_fields`, `roi_fields`, `face_id`) is plain
Python and tested without ROS; the node itself needs rclpy.
"""
import argparse

# fer-edge's labels -> hri_msgs/Expression constants.
HRI_LABELS = {
    "neutral": "neutral", "happy": "happy", "sad": "sad",
    "surprise": "surprised", "fear": "scared", "disgust": "disgusted", "anger": "angry",
    # Already ROS4HRI's ([mqtt] labels = "ros4hri").
    "surprised": "surprised", "scared": "scared", "disgusted": "disgusted", "angry": "angry",
}


def face_id(track_id: int) -> str:
    return f"f{track_id}"


def expression_fields(e) -> dict:
    """hri_msgs/Expression fields of a fer-edge Expression message."""
    return {"expression": HRI_LABELS[e.expression], "valence": float(e.valence),
            "arousal": float(e.arousal), "confidence": float(e.confidence)}


def roi_fields(e) -> dict:
    """hri_msgs/NormalizedRegionOfInterest2D fields (c: the smoothed confidence)."""
    x, y, w, h = e.bbox_normalized
    clamp = lambda v: min(1.0, max(0.0, float(v)))
    return {"xmin": clamp(x), "ymin": clamp(y), "xmax": clamp(x + w), "ymax": clamp(y + h),
            "c": float(e.confidence)}


def main() -> None:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
    from builtin_interfaces.msg import Time
    from hri_msgs.msg import Expression as HriExpression, IdsList, NormalizedRegionOfInterest2D

    from fer_edge_client import Expression, Tracked, connection_args, from_args

    a = connection_args(argparse.ArgumentParser(description=__doc__.split("usage:")[0].strip(), formatter_class=argparse.RawDescriptionHelpFormatter), seconds=False)
    a.add_argument("--frame-id", default="camera")
    args, ros_args = a.parse_known_args()
    rclpy.init(args=ros_args)
    node = Node("fer_edge_bridge")
    latched = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    tracked_pub = node.create_publisher(IdsList, "/humans/faces/tracked", latched)
    per_face = {}

    def stamp(t: float) -> Time:
        return Time(sec=int(t), nanosec=int((t - int(t)) * 1e9))

    def on_message(topic, msg):
        if isinstance(msg, Tracked):
            m = IdsList(ids=[face_id(t) for t in msg.track_ids])
            m.header.stamp, m.header.frame_id = stamp(msg.timestamp), args.frame_id
            tracked_pub.publish(m)
            for gone in set(per_face) - set(msg.track_ids):
                for p in per_face.pop(gone):
                    node.destroy_publisher(p)
        elif isinstance(msg, Expression):
            if msg.track_id not in per_face:
                ns = f"/humans/faces/{face_id(msg.track_id)}"
                per_face[msg.track_id] = (node.create_publisher(HriExpression, ns + "/expression", 10),
                                          node.create_publisher(NormalizedRegionOfInterest2D, ns + "/roi", 10))
            e_pub, r_pub = per_face[msg.track_id]
            e, r = HriExpression(**expression_fields(msg)), NormalizedRegionOfInterest2D(**roi_fields(msg))
            for m in (e, r):
                m.header.stamp, m.header.frame_id = stamp(msg.timestamp), args.frame_id
            e_pub.publish(e)
            r_pub.publish(r)

    client = from_args(args)
    client.on_message = on_message
    client.loop_start()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    client.stop()
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
