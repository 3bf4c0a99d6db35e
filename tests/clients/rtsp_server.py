"""A local RTSP camera for the tests: GStreamer's RTSP server library
(Debian's gir1.2-gst-rtsp-server-1.0, run with /usr/bin/python3 and
python3-gi) serving a folder of JPEG frames as a live MJPEG stream, looped,
optionally behind a basic-auth login. Like a camera it is live: a frame
every 1/FPS s from the moment it starts, stamped with the clock, whether
anyone is watching or not (the first client joins wherever it is).

usage: rtsp_server.py PORT FOLDER FPS [USER:PASSWORD]
Serves rtsp://127.0.0.1:PORT/cam; prints "ready" once listening.
"""
import glob
import sys



def main():
    if len(sys.argv) < 4 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    port, folder, fps = sys.argv[1], sys.argv[2], sys.argv[3]
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
    login = sys.argv[4] if len(sys.argv) > 4 else None
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    frames = [open(f, "rb").read() for f in sorted(glob.glob(f"{folder}/*.jpg"))]
    clock = {"n": 0, "srcs": []}

    def tick():
        data = frames[clock["n"] % len(frames)]
        clock["n"] += 1
        for src in clock["srcs"]:
            src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
        return True

    def configured(_factory, media):
        src = media.get_element().get_by_name("cam")
        clock["srcs"].append(src)
        media.connect("unprepared", lambda *_: clock["srcs"].remove(src))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( appsrc name=cam is-live=true do-timestamp=true format=time '
        f'caps="image/jpeg,framerate={fps}/1" ! jpegparse ! rtpjpegpay name=pay0 pt=26 )'
    )
    factory.set_shared(True)
    factory.connect("media-configure", configured)
    GLib.timeout_add(int(1000 / int(fps)), tick)
    if login:
        user, password = login.split(":", 1)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(
            Gst.Structure.new_from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
