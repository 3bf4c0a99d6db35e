#!/usr/bin/env python3
"""FLOPs of an ONNX model at a fixed input shape (2 x multiply-accumulates of
Conv, Gemm and MatMul; element-wise ops are ignored: they are memory-bound
and small next to the convolutions).

Usage: python tools/bench/flops.py MODEL.onnx 1,3,227,227   -> prints GFLOP
"""
import sys

import numpy as np
import onnx
from onnx import shape_inference


def flops(path, shape):
    m = onnx.load(path)
    inp = m.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    for d, v in zip(dims, shape):
        d.ClearField("dim_param")
        d.dim_value = v
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    total = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = inits[n.input[1]]
            out = shapes[n.output[0]]
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            total += int(np.prod(out)) * (w[1] * int(np.prod(w[2:])))
        elif n.op_type in ("Gemm", "MatMul"):
            a = shapes.get(n.input[0]) or inits.get(n.input[0])
            b = shapes.get(n.input[1]) or inits.get(n.input[1])
            trans_b = next((x.i for x in n.attribute if x.name == "transB"), 0)
            k = a[-1]
            cols = b[0] if trans_b else b[-1]
            total += int(np.prod(a[:-1])) * k * cols
    return 2 * total


if __name__ == "__main__":
    shape = [int(v) for v in sys.argv[2].split(",")]
    print(f"{flops(sys.argv[1], shape) / 1e9:.4f}")
