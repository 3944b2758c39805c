"""Convert a TensorFlow.js *graph model* (``model.json`` + ``*.bin``) to ONNX,
once, at set-up, with no TensorFlow anywhere.

Why hand-written: the converters on PyPI (tf2onnx, tfjs-to-tf through
``tensorflowjs``) all import TensorFlow itself, a ~600 MB dependency that
the run time must not need; onnx's own tools read no TF.js JSON. A TF.js
graph model is a frozen TensorFlow GraphDef written as JSON (nodes with
``op``, ``input``, ``attr``) plus one weights blob described by
``weightsManifest`` (name, shape, dtype, optional float16 / affine-uint8
quantisation), so a small translator covers the op set of the graphs we use
(MobileNetV3 CenterNet: convolutions with fused bias/ReLU, depthwise
convolutions, squeeze-excite means, bilinear upsampling, the 3x3 max-pool
peak picking and the top-k decoding of the detections).

Layout: TensorFlow's activations are NHWC; ONNX convolutions are NCHW. Every
4-D activation is kept NCHW and turned back to NHWC (a Transpose) only where
an op's meaning depends on the layout (Reshape, Gather, the graph outputs),
so the outputs are exactly the TF graph's. Subgraphs whose inputs are all
constants (shape arithmetic) are folded in numpy with TF's semantics.

Usage (what scripts/setup.sh runs)::

    python -m gr_semcom.semantic.detect.tfjs_onnx MODEL.json OUT.onnx

Needs the ``onnx`` package (set-up only); the run time needs onnxruntime.
"""
from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import numpy as np

_DT = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_BOOL": np.bool_, "DT_INT64": np.int64}
_NP_DT = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "float16": np.float16, "uint8": np.uint8,
          "uint16": np.uint16}
_LAYOUT_FREE_UNARY = {"Relu", "Relu6", "Sigmoid", "Identity", "Cast"}
_BINARY = {"Mul", "Add", "AddV2", "Sub", "Equal", "FloorDiv", "FloorMod", "RealDiv", "Maximum", "Minimum"}


class UnsupportedGraph(ValueError):
    """The TF.js graph uses an op or attribute this converter does not translate."""


def load_tfjs(model_json: str | Path) -> tuple[dict, list[dict], dict[str, np.ndarray]]:
    """``(graph JSON, nodes, weights)``: weights decoded from the ``.bin``
    shards (float16 / affine uint8 quantisation undone to float32)."""
    p = Path(model_json)
    g = json.loads(p.read_text())
    if g.get("format") != "graph-model":
        raise UnsupportedGraph(f"{p}: format {g.get('format')!r}, expected 'graph-model'")
    weights: dict[str, np.ndarray] = {}
    for group in g["weightsManifest"]:
        blob = b"".join((p.parent / path).read_bytes() for path in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            stored = _NP_DT[q["dtype"] if q else w["dtype"]]
            nbytes = n * np.dtype(stored).itemsize
            if off + nbytes > len(blob):
                raise UnsupportedGraph(f"{p}: weights blob too short for {w['name']}")
            a = np.frombuffer(blob, stored, n, off).reshape(shape)
            off += nbytes
            if q and q["dtype"] in ("uint8", "uint16"):
                a = a.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
            weights[w["name"]] = a.astype(_NP_DT[w["dtype"]]).copy()
    return g, g["modelTopology"]["node"], weights


def _s(attr: dict, key: str, default: str = "") -> str:
    v = attr.get(key, {}).get("s")
    return base64.b64decode(v).decode() if v else default


def _ints(attr: dict, key: str) -> list[int]:
    return [int(i) for i in attr.get(key, {}).get("list", {}).get("i", [])]


def _split(ref: str) -> tuple[str, int]:
    if ref.startswith("^"):
        return ref[1:], -1  # control dependency
    name, _, idx = ref.partition(":")
    return name, int(idx) if idx else 0


def _fold(op: str, a: list, attr: dict):
    """TF semantics of the constant-only ops (shape arithmetic)."""
    if op in ("Identity",):
        return a[0]
    if op in ("Mul",):
        return np.multiply(a[0], a[1])
    if op in ("Add", "AddV2"):
        return np.add(a[0], a[1])
    if op == "Sub":
        return np.subtract(a[0], a[1])
    if op == "FloorDiv":
        return np.floor_divide(a[0], a[1])
    if op == "FloorMod":
        return np.mod(a[0], a[1])
    if op == "ConcatV2":
        return np.concatenate([np.atleast_1d(x) for x in a[:-1]], axis=int(a[-1]))
    if op == "Cast":
        return a[0].astype(_DT[attr["DstT"]["type"]])
    if op == "ExpandDims":
        return np.expand_dims(a[0], int(a[1]))
    if op == "Reshape":
        return a[0].reshape([int(s) for s in a[1]])
    if op == "StridedSlice":
        return a[0][_strided_index(a[0].ndim, a[1], a[2], a[3], attr)]
    if op == "Pack":
        return np.stack(a, axis=int(attr.get("axis", {}).get("i", 0)))
    raise UnsupportedGraph(f"cannot fold constant op {op}")


def _strided_index(ndim, begin, end, strides, attr):
    bm, em = int(attr.get("begin_mask", {}).get("i", 0)), int(attr.get("end_mask", {}).get("i", 0))
    for k in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask"):
        if int(attr.get(k, {}).get("i", 0)):
            raise UnsupportedGraph(f"StridedSlice {k} is not supported")
    idx = []
    for d in range(ndim):
        if d >= len(begin):
            idx.append(slice(None))
            continue
        b = None if bm >> d & 1 else int(begin[d])
        e = None if em >> d & 1 else int(end[d])
        idx.append(slice(b, e, int(strides[d])))
    return tuple(idx)


class _Builder:
    def __init__(self, weights: dict[str, np.ndarray]):
        from onnx import TensorProto, helper, numpy_helper

        self.h, self.nh, self.TP = helper, numpy_helper, TensorProto
        self.const: dict[str, np.ndarray] = dict(weights)
        self.nchw: set[str] = set()  # ONNX tensors holding a TF NHWC 4-D activation in NCHW order
        self.nodes, self.inits, self._cache, self._n = [], [], {}, 0

    def uid(self, base: str) -> str:
        self._n += 1
        return f"{base}__{self._n}"

    def init(self, base: str, value: np.ndarray) -> str:
        name = self.uid(base)
        self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def add(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs) -> str:
        outputs = outputs or [self.uid(op)]
        self.nodes.append(self.h.make_node(op, inputs, outputs, **attrs))
        return outputs[0]

    # -- operands ---------------------------------------------------------
    def nhwc(self, t: str) -> str:
        """Tensor ``t`` in TF's own layout (Transpose back when stored NCHW)."""
        if t not in self.nchw:
            return t
        key = ("nhwc", t)
        if key not in self._cache:
            self._cache[key] = self.add("Transpose", [t], perm=[0, 2, 3, 1])
        return self._cache[key]

    def const_for(self, value: np.ndarray, nchw: bool, base: str) -> str:
        v = np.asarray(value)
        if nchw:
            if v.ndim == 4:
                v = v.transpose(0, 3, 1, 2)
            elif v.ndim in (1, 2, 3) and v.shape[-1] != 1:
                v = v.reshape(v.shape[-1], 1, 1)  # per-channel [C] broadcasts on NHWC's last axis
        return self.init(base, v)


def convert(model_json: str | Path, out_path: str | Path, opset: int = 18) -> Path:
    """Translate the graph and write ``out_path`` (ONNX); returns its path.
    Inputs and outputs keep the graph's names, layouts and dtypes."""
    import onnx

    g, nodes, weights = load_tfjs(model_json)
    b = _Builder(weights)
    h, TP = b.h, b.TP
    names: dict[tuple[str, int], str] = {}  # (tf node, output index) -> onnx tensor
    graph_inputs = []

    def ref(r: str) -> str:
        name, i = _split(r)
        return names[(name, i)]

    def is_const(r: str) -> bool:
        name, i = _split(r)
        return i == 0 and name in b.const

    def cval(r: str) -> np.ndarray:
        return b.const[_split(r)[0]]

    for n in nodes:
        op, name, attr = n["op"], n["name"], n.get("attr", {})
        ins = [r for r in n.get("input", []) if not r.startswith("^")]
        if op == "Const":
            if name not in b.const:
                t = attr.get("value", {}).get("tensor", {})
                raise UnsupportedGraph(f"Const {name} has no weights entry ({t.get('dtype')})")
            continue
        if op == "Placeholder":
            dims = [int(d["size"]) for d in attr["shape"]["shape"]["dim"]]
            graph_inputs.append(h.make_tensor_value_info(name, TP.FLOAT, dims))
            if len(dims) == 4:
                t = b.add("Transpose", [name], perm=[0, 3, 1, 2])
                b.nchw.add(t)
                names[(name, 0)] = t
            else:
                names[(name, 0)] = name
            continue
        if ins and all(is_const(r) for r in ins) and op not in ("_FusedConv2D", "Conv2D"):
            b.const[name] = np.asarray(_fold(op, [cval(r) for r in ins], attr))
            continue

        if op in ("_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
            x = ref(ins[0])
            if x not in b.nchw:
                raise UnsupportedGraph(f"{name}: convolution input is not a 4-D activation")
            if _s(attr, "data_format", "NHWC") != "NHWC":
                raise UnsupportedGraph(f"{name}: data_format {_s(attr, 'data_format')}")
            w = cval(ins[1]).astype(np.float32)
            kh, kw = w.shape[:2]
            if "Depthwise" in op:
                cin, mult = w.shape[2], w.shape[3]
                wo = w.reshape(kh, kw, cin * mult).transpose(2, 0, 1)[:, None]
                group = cin
            else:
                wo, group = w.transpose(3, 2, 0, 1), 1
            strides, dil = _ints(attr, "strides")[1:3], (_ints(attr, "dilations") or [1, 1, 1, 1])[1:3]
            pad = _s(attr, "padding")
            kw_ = dict(strides=strides, dilations=dil, group=group, kernel_shape=[kh, kw])
            if pad == "SAME":
                kw_["auto_pad"] = "SAME_UPPER"  # TF puts the odd pixel of padding at the end
            elif pad == "VALID":
                kw_["pads"] = [0, 0, 0, 0]
            else:
                raise UnsupportedGraph(f"{name}: padding {pad!r}")
            inputs = [x, b.init(name + "/W", np.ascontiguousarray(wo))]
            fused = [base64.b64decode(s).decode() for s in attr.get("fused_ops", {}).get("list", {}).get("s", [])]
            if fused and fused[0] == "BiasAdd":
                inputs.append(b.init(name + "/B", cval(ins[2]).astype(np.float32).reshape(-1)))
                fused = fused[1:]
            y = b.add("Conv", inputs, **kw_)
            for f in fused:
                if f == "Relu":
                    y = b.add("Relu", [y])
                elif f == "Relu6":
                    y = b.add("Clip", [y, b.init("zero", np.float32(0)), b.init("six", np.float32(6))])
                else:
                    raise UnsupportedGraph(f"{name}: fused op {f}")
            b.nchw.add(y)
            names[(name, 0)] = y
        elif op in _LAYOUT_FREE_UNARY:
            x = ref(ins[0])
            if op == "Relu6":
                y = b.add("Clip", [x, b.init("zero", np.float32(0)), b.init("six", np.float32(6))])
            elif op == "Cast":
                to = {"DT_FLOAT": TP.FLOAT, "DT_INT32": TP.INT32, "DT_INT64": TP.INT64,
                      "DT_BOOL": TP.BOOL}[attr["DstT"]["type"]]
                y = b.add("Cast", [x], to=to)
            else:
                y = b.add(op, [x])
            if x in b.nchw:
                b.nchw.add(y)
            names[(name, 0)] = y
        elif op in _BINARY:
            live = [ref(r) for r in ins if not is_const(r)]
            nchw = any(t in b.nchw for t in live) and all(t in b.nchw for t in live)
            operands = []
            for r in ins:
                if is_const(r):
                    operands.append(b.const_for(cval(r), nchw, name + "/c"))
                else:
                    t = ref(r)
                    operands.append(t if nchw else b.nhwc(t))
            if op == "FloorDiv":
                if cval(ins[1]).dtype.kind == "f" if is_const(ins[1]) else False:
                    y = b.add("Floor", [b.add("Div", operands)])
                else:  # integer indices here are >= 0: truncation == floor
                    y = b.add("Div", operands)
            elif op == "FloorMod":
                y = b.add("Mod", operands, fmod=0)
            else:
                y = b.add({"AddV2": "Add", "RealDiv": "Div", "Maximum": "Max", "Minimum": "Min"}.get(op, op),
                          operands)
            if nchw:
                b.nchw.add(y)
            names[(name, 0)] = y
        elif op == "Mean":
            x = ref(ins[0])
            axes = [int(a) for a in np.atleast_1d(cval(ins[1]))]
            keep = int(bool(attr.get("keep_dims", {}).get("b", False)))
            if x in b.nchw and keep:
                axes = [{0: 0, 1: 2, 2: 3, 3: 1}[a % 4] for a in axes]
                y = b.add("ReduceMean", [x, b.init(name + "/axes", np.array(axes, np.int64))], keepdims=keep)
                b.nchw.add(y)
            else:
                y = b.add("ReduceMean", [b.nhwc(x), b.init(name + "/axes", np.array(axes, np.int64))], keepdims=keep)
            names[(name, 0)] = y
        elif op == "ConcatV2":
            parts, axis = ins[:-1], int(cval(ins[-1]))
            live = [ref(r) for r in parts if not is_const(r)]
            if live and all(t in b.nchw for t in live) and len(live) == len(parts):
                y = b.add("Concat", live, axis={0: 0, 1: 2, 2: 3, 3: 1}[axis % 4])
                b.nchw.add(y)
            else:
                ops_ = [b.init(name + "/c", cval(r)) if is_const(r) else b.nhwc(ref(r)) for r in parts]
                y = b.add("Concat", ops_, axis=axis)
            names[(name, 0)] = y
        elif op == "ResizeBilinear":
            x = ref(ins[0])
            if x not in b.nchw:
                raise UnsupportedGraph(f"{name}: resize of a non-image tensor")
            ac = bool(attr.get("align_corners", {}).get("b", False))
            hp = bool(attr.get("half_pixel_centers", {}).get("b", False))
            mode = "align_corners" if ac else ("half_pixel" if hp else "asymmetric")
            size = np.asarray(cval(ins[1]), np.int64).reshape(2)
            y = b.add("Resize", [x, "", "", b.init(name + "/size", size)], mode="linear", axes=[2, 3],
                      coordinate_transformation_mode=mode)
            b.nchw.add(y)
            names[(name, 0)] = y
        elif op == "MaxPool":
            x = ref(ins[0])
            k, s = _ints(attr, "ksize")[1:3], _ints(attr, "strides")[1:3]
            pad = _s(attr, "padding")
            kw_ = dict(kernel_shape=k, strides=s)
            if pad == "SAME":
                kw_["auto_pad"] = "SAME_UPPER"
            y = b.add("MaxPool", [x], **kw_)
            b.nchw.add(y)
            names[(name, 0)] = y
        elif op == "Reshape":
            shape = np.asarray(cval(ins[1]), np.int64)
            names[(name, 0)] = b.add("Reshape", [b.nhwc(ref(ins[0])), b.init(name + "/shape", shape)])
        elif op == "TopKV2":
            k = np.asarray(cval(ins[1]), np.int64).reshape(1)
            vals, idx = name, name + ":1:i64"
            b.add("TopK", [b.nhwc(ref(ins[0])), b.init(name + "/k", k)], [vals, idx], axis=-1, largest=1, sorted=1)
            names[(name, 0)] = vals
            names[(name, 1)] = b.add("Cast", [idx], to=TP.INT32)
        elif op == "GatherV2":
            axis = int(cval(ins[2]))
            if int(attr.get("batch_dims", {}).get("i", 0)):
                raise UnsupportedGraph(f"{name}: batch_dims")
            idx = b.init(name + "/i", cval(ins[1])) if is_const(ins[1]) else b.nhwc(ref(ins[1]))
            names[(name, 0)] = b.add("Gather", [b.nhwc(ref(ins[0])), idx], axis=axis)
        elif op == "StridedSlice":
            begin, end, strides = (np.asarray(cval(r), np.int64) for r in ins[1:4])
            sl = _strided_index(len(begin), begin, end, strides, attr)
            starts, ends, axes, steps = [], [], [], []
            for d, s in enumerate(sl):
                if s == slice(None):
                    continue
                axes.append(d)
                st = s.step or 1
                starts.append(s.start if s.start is not None else (0 if st > 0 else -1))
                ends.append(s.stop if s.stop is not None else (np.iinfo(np.int64).max if st > 0
                                                                else np.iinfo(np.int64).min))
                steps.append(st)
            x = b.nhwc(ref(ins[0]))
            names[(name, 0)] = b.add("Slice", [x] + [b.init(name + f"/{k}", np.array(v, np.int64)) for k, v in
                                                     (("starts", starts), ("ends", ends), ("axes", axes),
                                                      ("steps", steps))])
        elif op == "ExpandDims":
            axis = np.asarray(cval(ins[1]), np.int64).reshape(1)
            names[(name, 0)] = b.add("Unsqueeze", [b.nhwc(ref(ins[0])), b.init(name + "/axis", axis)])
        else:
            raise UnsupportedGraph(f"op {op} ({name}) is not translated")

    outputs = []
    for out_name, spec in g["signature"]["outputs"].items():
        node = spec["name"].split(":")[0]
        t = b.nhwc(names[(node, 0)])
        dims = [int(d["size"]) for d in spec["tensorShape"]["dim"]]
        b.add("Identity", [t], [out_name])
        outputs.append(h.make_tensor_value_info(out_name, TP.FLOAT, dims))
    graph = h.make_graph(b.nodes, Path(model_json).stem, graph_inputs, outputs, b.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], producer_name="gr_semcom.tfjs_onnx")
    model.ir_version = 8
    model.doc_string = f"converted from {Path(model_json).name} ({g.get('convertedBy', '')}; {g.get('generatedBy', '')})"
    onnx.checker.check_model(model)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_json")
    ap.add_argument("out")
    ap.add_argument("--opset", type=int, default=18)
    a = ap.parse_args(argv)
    print(convert(a.model_json, a.out, a.opset))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
