#!/usr/bin/env python3
"""Make fer-edge's derived test fixtures from the real photos in tests/data/.

Writes:
  tests/data/frames640/one_face.png    astronaut.png scaled into a 640x480 frame (1 face)
  tests/data/frames640/six_faces.png   group_t1.jpg scaled into a 640x480 frame (6 faces)
  tests/data/sequences/pan6/*.jpg      30 frames, 640x480: the group photo drifting
                                       ~3 px per frame (six faces, all in view)
  tests/data/sequences/pan1/*.jpg      30 frames, 640x480: the astronaut drifting (one face)
  tests/data/sequences/pan1_dark/*.jpg pan1 under-exposed (x0.22, about -2.2 stops)
  tests/data/sequences/pan1_blur/*.jpg pan1 out of focus (Gaussian blur, radius 3 px)
  tests/data/sequences/neutral1/*.jpg  20 frames, 640x480: a neutral FER2013 face (from
      fer2013-sample, scaled to 200 px) drifting; `python tools/make_test_fixtures.py
      neutral` remakes only these (calibrate --baseline's test)
      the variants `fer-edge calibrate` must warn about (tests/calibrate.rs);
      `python tools/make_test_fixtures.py variants` remakes only these
  tests/data/golden/*.png + golden.json
      small real-image inputs at each network's exact input size, and what
      onnxruntime (the reference runtime) outputs for them; the Rust test
      `tests/golden.rs` runs the same inputs through every fer-edge backend
      and requires agreement within 1e-4.
      `python tools/make_test_fixtures.py bundle models/NAME` adds or
      replaces only the case of one FER2013-trained bundle (48x48 grey).

Needs: numpy, pillow, onnxruntime.   Usage: python tools/make_test_fixtures.py
"""
import json
import os

# Official onnxruntime wheels send usage telemetry and keep a device id under
# ~/.cache/Microsoft unless this is set before they load (fer-edge sets it too).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def frame640(src, out):
    im = Image.open(os.path.join(DATA, src)).convert("RGB")
    scale = min(640 / im.width, 480 / im.height)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR)
    mean = tuple(int(v) for v in np.asarray(im).reshape(-1, 3).mean(0))
    canvas = Image.new("RGB", (640, 480), mean)
    canvas.paste(im, ((640 - im.width) // 2, (480 - im.height) // 2))
    canvas.save(os.path.join(DATA, "frames640", out))


def pan_sequence(src, out, n=30, amp=(24, 10)):
    """Frames of a photo scaled into 640x480 and drifting on a smooth path."""
    im = Image.open(os.path.join(DATA, src)).convert("RGB")
    scale = min(600 / im.width, 440 / im.height)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR)
    mean = tuple(int(v) for v in np.asarray(im).reshape(-1, 3).mean(0))
    folder = os.path.join(DATA, "sequences", out)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        phase = 2 * np.pi * i / n
        dx, dy = amp[0] * np.sin(phase), amp[1] * (1 - np.cos(phase))
        canvas = Image.new("RGB", (640, 480), mean)
        canvas.paste(im, (int(round((640 - im.width) / 2 + dx)), int(round((480 - im.height) / 2 + dy - amp[1] / 2))))
        canvas.save(os.path.join(folder, f"{i:04d}.jpg"), quality=90)


NEUTRAL_FACE = "fer2013-sample/neutral/PublicTest_10751192.jpg"


def neutral_sequence(n=20):
    """A neutral face (one of the FER2013 sample's, scaled 48 -> 200 px) in a
    640x480 frame, drifting: what `calibrate --baseline` is meant for."""
    im = Image.open(os.path.join(DATA, NEUTRAL_FACE)).convert("RGB").resize((200, 200), Image.BICUBIC)
    folder = os.path.join(DATA, "sequences", "neutral1")
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        phase = 2 * np.pi * i / n
        canvas = Image.new("RGB", (640, 480), (110, 110, 110))
        canvas.paste(im, (int(round(220 + 12 * np.sin(phase))), int(round(140 + 5 * (1 - np.cos(phase))))))
        canvas.save(os.path.join(folder, f"{i:04d}.jpg"), quality=90)


def quality_variants():
    """pan1 darkened and blurred: what a badly lit or focused camera gives."""
    from PIL import ImageFilter
    src = os.path.join(DATA, "sequences", "pan1")
    for name, change in [("pan1_dark", lambda im: Image.eval(im, lambda v: int(v * 0.22))),
                         ("pan1_blur", lambda im: im.filter(ImageFilter.GaussianBlur(3)))]:
        folder = os.path.join(DATA, "sequences", name)
        os.makedirs(folder, exist_ok=True)
        for f in sorted(os.listdir(src)):
            change(Image.open(os.path.join(src, f)).convert("RGB")).save(os.path.join(folder, f), quality=90)


def session(path):
    return ort.InferenceSession(os.path.join(ROOT, path), providers=["CPUExecutionProvider"])


def mtcnn_input(rgb):
    """HWC uint8 -> MTCNN's 1 x W x H x 3, (x - 127.5) / 128."""
    x = (rgb.astype(np.float32) - 127.5) * 0.0078125
    return np.ascontiguousarray(x.transpose(1, 0, 2)[None])


DEFAULT_BUNDLE = "models/fernet-w32"


def fernet_case(astro, bundle):
    """A bundle trained by emotion_gcn.fer2013 (48x48 grey, mean/std 0.5) on
    a 48x48 grey crop of the astronaut's face."""
    face = astro.crop((170, 60, 280, 170)).convert("L").resize((48, 48), Image.BILINEAR)
    face.save(os.path.join(DATA, "golden", "face48_gray.png"))
    x = ((np.asarray(face, np.float32) / 255.0 - 0.5) / 0.5)[None, None]
    model = f"{bundle}/model.onnx"
    out = session(model).run(None, {"input": x})
    return {"model": model, "input": "golden/face48_gray.png", "layout": "nchw_gray", "shape": [1, 1, 48, 48],
            "outputs": [o.reshape(-1).tolist() for o in out]}


def add_bundle(bundle):
    """Adds (or replaces) one FER2013-trained bundle's case in golden.json,
    leaving every other fixture as it is."""
    astro = Image.open(os.path.join(DATA, "astronaut.png")).convert("RGB")
    path = os.path.join(DATA, "golden", "golden.json")
    with open(path) as f:
        golden = json.load(f)
    case = fernet_case(astro, bundle)
    golden["cases"] = [c for c in golden["cases"] if c["model"] != case["model"]] + [case]
    golden["runtime"] = f"onnxruntime {ort.__version__}"
    with open(path, "w") as f:
        json.dump(golden, f)
        f.write("\n")
    print("golden case for", case["model"])


def main():
    os.makedirs(os.path.join(DATA, "frames640"), exist_ok=True)
    os.makedirs(os.path.join(DATA, "golden"), exist_ok=True)
    frame640("astronaut.png", "one_face.png")
    frame640("group_t1.jpg", "six_faces.png")
    pan_sequence("group_t1.jpg", "pan6")
    pan_sequence("astronaut.png", "pan1")

    astro = Image.open(os.path.join(DATA, "astronaut.png")).convert("RGB")
    group = Image.open(os.path.join(DATA, "group_t1.jpg")).convert("RGB")
    golden = {"runtime": f"onnxruntime {ort.__version__}", "cases": []}

    # mini-Xception: a 64x64 grey crop of the astronaut's face.
    face = astro.crop((170, 60, 280, 170)).convert("L").resize((64, 64), Image.BILINEAR)
    face.save(os.path.join(DATA, "golden", "face64_gray.png"))
    x = ((np.asarray(face, np.float32) / 255.0 - 0.5) / 0.5)[None, None]
    out = session("models/fer-minixception/model.onnx").run(None, {"input": x})
    golden["cases"].append({"model": "models/fer-minixception/model.onnx", "input": "golden/face64_gray.png",
                            "layout": "nchw_gray", "shape": [1, 1, 64, 64],
                            "outputs": [o.reshape(-1).tolist() for o in out]})

    golden["cases"].append(fernet_case(astro, DEFAULT_BUNDLE))

    # MTCNN: P-Net on a 60x44 scaled patch, R-Net 24x24 and O-Net 48x48 face crops.
    cases = [("pnet", group.crop((440, 240, 600, 357)).resize((60, 44), Image.BILINEAR)),
             ("rnet", group.crop((464, 264, 572, 411)).resize((24, 24), Image.BILINEAR)),
             ("onet", group.crop((741, 342, 841, 475)).resize((48, 48), Image.BILINEAR))]
    for name, img in cases:
        fname = f"golden/{name}_in.png"
        img.save(os.path.join(DATA, fname))
        x = mtcnn_input(np.asarray(img))
        sess = session(f"models/mtcnn/{name}.onnx")
        out = sess.run(None, {sess.get_inputs()[0].name: x})
        golden["cases"].append({"model": f"models/mtcnn/{name}.onnx", "input": fname, "layout": "mtcnn_wh",
                                "shape": list(x.shape), "outputs": [o.reshape(-1).tolist() for o in out]})

    with open(os.path.join(DATA, "golden", "golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")
    print("wrote", len(golden["cases"]), "golden cases")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["variants"]:
        quality_variants()
    elif sys.argv[1:] == ["neutral"]:
        neutral_sequence()
    elif sys.argv[1:2] == ["bundle"] and len(sys.argv) == 3:
        add_bundle(sys.argv[2])
    else:
        main()
        quality_variants()
        neutral_sequence()
