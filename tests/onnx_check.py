#!/usr/bin/python3
"""onnx_check.py: an ONNX network evaluated in float64 with numpy, for tests/test_interop.c.

    onnx_check.py NET.onnx X.csv

Reads the graph with the onnx package (only to parse the file) and runs it
node by node in numpy float64, independently of lln: the value at each input
of X.csv (one example per line, the graph input flattened in C order) and,
alongside, the tangents d value / d x (the identity pushed through the
network with the ReLU masks of that input), which give every hidden neuron's
input gradient.  A hidden neuron is an input of a Relu node.  Prints one
line per example:

    logits... eps_l1 eps_l2 eps_linf pred_l1 pred_l2 pred_linf

eps_p = min over hidden neurons h with a non-zero gradient of |z_h| / ||g_h||_q
(q the dual exponent), the largest l_p ball inside the activation region;
pred_p = min(eps_p, min over classes k != label of (f_label - f_k) / ||g_label - g_k||_q),
the radius within which the prediction is certified too (docs/certifier.md);
inf when nothing bounds it.
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def conv(x, w, stride, pads):
    """x [B, C, H, W], w [O, C, K, K], pads (top, left, bottom, right)."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    b, c, h, wd = x.shape
    o, _, k, _ = w.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((b, o, oh, ow))
    for i in range(k):
        for j in range(k):
            patch = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
    return out


def avgpool(x, k, s):
    b, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((b, c, oh, ow))
    for i in range(k):
        for j in range(k):
            out += x[:, :, i:i + s * oh:s, j:j + s * ow:s]
    return out / (k * k)


def run(model, x):
    """Logits [n_out], tangents [D, n_out] and the hidden (z, g) pairs."""
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    inp = [i for i in g.input if i.name not in consts][0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
    D = int(np.prod(shape))
    vals = {inp.name: (x.reshape([1] + shape), np.eye(D).reshape([D] + shape))}
    hidden = []
    for n in g.node:
        op = n.op_type
        ins = list(n.input)
        if op == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(attr(n, "value", None)).astype(np.float64)
            continue
        if op in ("Identity", "Dropout") and ins[0] in consts:
            consts[n.output[0]] = consts[ins[0]]
            continue
        if op in ("Add", "Sub", "Mul", "Div") and (ins[0] in consts or ins[1] in consts):
            ci = 0 if ins[0] in consts else 1
            c = consts[ins[ci]]
            v, t = vals[ins[1 - ci]]
            if op == "Add":
                r = (v + c, t)
            elif op == "Sub":
                r = (v - c, t)
            elif op == "Mul":
                r = (v * c, t * c)
            else:
                r = (v / c, t / c)
        elif op == "Add":
            (v1, t1), (v2, t2) = vals[ins[0]], vals[ins[1]]
            r = (v1 + v2, t1 + t2)
        elif op in ("Gemm", "MatMul"):
            v, t = vals[ins[0]]
            b = consts[ins[1]]
            if op == "Gemm" and attr(n, "transB", 0):
                b = b.T
            alpha = attr(n, "alpha", 1.0) if op == "Gemm" else 1.0
            beta = attr(n, "beta", 1.0) if op == "Gemm" else 1.0
            c = consts[ins[2]] * beta if len(ins) > 2 and ins[2] else 0
            r = (alpha * v @ b + c, alpha * t @ b)
        elif op == "Conv":
            v, t = vals[ins[0]]
            w = consts[ins[1]]
            bias = consts[ins[2]] if len(ins) > 2 and ins[2] else np.zeros(w.shape[0])
            s = attr(n, "strides", [1, 1])[0]
            p = list(attr(n, "pads", [0, 0, 0, 0]))
            r = (conv(v, w, s, p) + bias[None, :, None, None], conv(t, w, s, p))
        elif op == "BatchNormalization":
            v, t = vals[ins[0]]
            gm, bt, mu, var = (consts[i][None, :, None, None] if v.ndim == 4 else consts[i]
                               for i in ins[1:5])
            f = gm / np.sqrt(var + attr(n, "epsilon", 1e-5))
            r = ((v - mu) * f + bt, t * f)
        elif op == "Relu":
            v, t = vals[ins[0]]
            hidden.append((v.reshape(-1), t.reshape(D, -1)))
            m = (v > 0).astype(np.float64)
            r = (v * m, t * m)
        elif op == "AveragePool":
            v, t = vals[ins[0]]
            k = attr(n, "kernel_shape", None)[0]
            s = attr(n, "strides", [1, 1])[0]
            r = (avgpool(v, k, s), avgpool(t, k, s))
        elif op == "Pad":
            v, t = vals[ins[0]]
            p = consts[ins[1]].astype(int)
            widths = [(0, 0), (0, 0), (p[2], p[6]), (p[3], p[7])]
            r = (np.pad(v, widths), np.pad(t, widths))
        elif op in ("Flatten", "Reshape"):
            v, t = vals[ins[0]]
            r = (v.reshape(1, -1), t.reshape(D, -1))
        elif op in ("Identity", "Dropout"):
            r = vals[ins[0]]
        else:
            raise SystemExit("onnx_check.py: no evaluation for %s" % op)
        vals[n.output[0]] = r
    v, t = vals[g.output[0].name]
    return v.reshape(-1), t.reshape(D, -1), hidden


def radii(logits, T, hidden):
    out = []
    qs = [np.inf, 2, 1]   # dual exponents of p = 1, 2, inf
    eps = []
    for q in qs:
        e = np.inf
        for z, g in hidden:
            norms = np.linalg.norm(g, ord=q, axis=0)
            ok = norms > 0
            if ok.any():
                e = min(e, np.min(np.abs(z[ok]) / norms[ok]))
        eps.append(e)
    if len(logits) == 1:
        label, others = (1 if logits[0] > 0 else 0), [None]
    else:
        label = int(np.argmax(logits))
        others = [k for k in range(len(logits)) if k != label]
    pred = []
    for q, e in zip(qs, eps):
        r = e
        for k in others:
            if k is None:
                diff, gd = abs(logits[0]), T[:, 0]
            else:
                diff, gd = logits[label] - logits[k], T[:, label] - T[:, k]
            nq = np.linalg.norm(gd, ord=q)
            if nq > 0:
                r = min(r, diff / nq)
        pred.append(r)
    return eps + pred


def main():
    model = onnx.load(sys.argv[1])
    X = np.loadtxt(sys.argv[2], delimiter=",", ndmin=2, dtype=np.float64)
    for x in X:
        logits, T, hidden = run(model, x)
        print(" ".join("%.17g" % v for v in list(logits) + radii(logits, T, hidden)))


if __name__ == "__main__":
    main()
