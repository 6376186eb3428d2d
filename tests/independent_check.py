#!/usr/bin/env python3
"""independent_check.py: an independent double-precision check of a certifier.

Reads the weights (a safetensors file, parsed here from its header), the
model (either a chain of dense layers, each followed by a ReLU except the
last, with normalize mean and std; or, with --lln, the model block of an
.lln file with dense, conv2d, avgpool, add and relu, parsed here), the
inputs (.npy, .csv or IDX) and a certifier's jsonl output, recomputes in
float64 with numpy only

  forward      each statement on C x H x W arrays: conv2d as nn.Conv2d
               (cross-correlation, zero padding), avgpool as nn.AvgPool2d,
               add, dense on the C-major flattening; relu'd statements are
               the hidden neurons, in definition order
  Jacobians    the D tangents e_d / std pushed through the same statements
               without biases, masked by (z > 0) after each relu
  margins      eps_p = min_h |z_h| / ||g_h||_q  (q dual to p; g = 0 never binds)
  prediction   min(eps_p, min_{k != y} (f_y - f_k) / ||grad (f_y - f_k)||_q)
               (one logit: |f| / ||grad f||_q, label = f > 0)

and compares label, eps_l1 / eps_l2 / eps_linf, their binding neurons and
eps_pred_* with the jsonl records.  The tolerance is rtol relative; with
--zmag-tol T also T times the magnitudes summed into the binding value
(|weights| times |values| through every statement) over its gradient's
dual norm, for float32 rounding when |z| is a small difference of large
terms (T = 1e-6 is about 16 roundings).  Prints the maximum relative error
per quantity; exits 1 on a mismatch, 2 on bad usage.

  python3 tests/independent_check.py --weights W.safetensors \\
      --layers fc1,fc2,fc3,fc4,fc5 --mean 0.1307 --std 0.3081 \\
      --input X.npy --certified out.jsonl [--rtol 1e-4]
  python3 tests/independent_check.py --weights W.safetensors \\
      --lln tests/data/cnn.lln --input X.npy --certified out.jsonl

--layout FILE.json may give {"layers": [...], "mean": m, "std": s} instead.
"""
import argparse
import json
import math
import re
import struct
import sys

import numpy as np

NORMS = ("l1", "l2", "linf")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    body = data[8 + hlen:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        arr = np.frombuffer(body[begin:end], dtype="<f4").astype(np.float64)
        shape = tuple(info["shape"])
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name} holds {arr.size} values for shape {shape}")
        tensors[name] = arr.reshape(shape)
    return tensors


def read_idx(path):
    """IDX (MNIST format): unsigned bytes scaled to [0, 1], or float32."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in (0x08, 0x0D):
        raise ValueError(f"{path}: not an IDX file of unsigned bytes or float32")
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    body = data[4 + 4 * nd:]
    if data[2] == 0x08:
        x = np.frombuffer(body, dtype=np.uint8) / 255.0  # the value as given: b / 255
    else:
        x = np.frombuffer(body, dtype=">f4").astype(np.float64)
    return x.reshape(dims[0], -1)


def read_inputs(path, dim):
    if path.endswith(".npy"):
        x = np.load(path, allow_pickle=False)
        x = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    elif not path.endswith(".csv"):
        x = read_idx(path)
    else:
        rows = []
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                rows.append([float(v) for v in line.split(",")])
        x = np.asarray(rows, dtype=np.float64)
    if x.shape[1] != dim:
        raise ValueError(f"{path}: {x.shape[1]} values per example, the model takes {dim}")
    return x.astype(np.float64)  # the values as given, which the certifier certifies


def dual(v, p):
    """Dual norm of the rows of v for the l_p ball (p in l1, l2, linf)."""
    a = np.abs(v)
    if p == "l1":
        return a.max(axis=-1)
    if p == "l2":
        return np.sqrt((a * a).sum(axis=-1))
    return a.sum(axis=-1)


# ---- models: a list of statements over C x H x W values ----

def tokens(text):
    text = re.sub(r"(#|//)[^\n]*", "", text)
    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*|-?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|[{}()\[\],;=]", text)


def parse_call(tk, i):
    """IDENT "(" args ")" or IDENT or NUMBER at tk[i]; returns (expr, next i)."""
    head = tk[i]
    if i + 1 < len(tk) and tk[i + 1] == "(":
        i += 2
        pos, kw = [], {}
        while tk[i] != ")":
            if tk[i + 1] == "=":
                key = tk[i]
                val, i = parse_call(tk, i + 2)
                kw[key] = val
            else:
                val, i = parse_call(tk, i)
                pos.append(val)
            if tk[i] == ",":
                i += 1
        return (head, pos, kw), i + 1
    return head, i + 1


def parse_lln(path):
    """The model block of an .lln file: input shape, normalize, statements."""
    with open(path) as f:
        tk = tokens(f.read())
    i = tk.index("model") + 3
    model = {"stmts": [], "mean": 0.0, "std": 1.0}
    while tk[i] != "}":
        if tk[i] == "input":
            j = tk.index("]", i)
            model["input"] = tk[i + 1]
            model["shape"] = [int(v) for v in tk[i + 3:j] if v != ","]
            i = j + 1
            if tk[i] == "normalize":
                model["mean"], model["std"] = float(tk[i + 2]), float(tk[i + 4])
                i += 6
        elif tk[i] == "output":
            model["output"] = tk[i + 1]
            i += 2
        else:
            name = tk[i]
            expr, i = parse_call(tk, i + 2)
            relu = expr[0] == "relu"
            if relu:
                expr = expr[1][0]
            model["stmts"].append((name, relu, expr))
        assert tk[i] == ";", f"{path}: unexpected {tk[i]!r}"
        i += 1
    return model


def dense_model(names, mean, std, dim):
    stmts, prev = [], "x"
    for k, n in enumerate(names):
        stmts.append((n, k + 1 < len(names), ("dense", [prev], {})))
        prev = n
    return {"input": "x", "shape": [dim], "mean": mean, "std": std, "stmts": stmts, "output": prev}


def conv(v, W, b, stride, pad):
    """nn.Conv2d on a batch v (B, C, H, W) with weight (O, C, K, K)."""
    B, C, H, Wd = v.shape
    O, _, K, _ = W.shape
    vp = np.zeros((B, C, H + 2 * pad, Wd + 2 * pad))
    vp[:, :, pad:pad + H, pad:pad + Wd] = v
    Ho, Wo = (H + 2 * pad - K) // stride + 1, (Wd + 2 * pad - K) // stride + 1
    out = np.zeros((B, O, Ho, Wo))
    for ky in range(K):
        for kx in range(K):
            win = vp[:, :, ky:ky + stride * (Ho - 1) + 1:stride, kx:kx + stride * (Wo - 1) + 1:stride]
            out += np.einsum("oc,bchw->bohw", W[:, :, ky, kx], win)
    if b is not None:
        out += b[None, :, None, None]
    return out


def avgpool(v, K, stride):
    B, C, H, W = v.shape
    Ho, Wo = (H - K) // stride + 1, (W - K) // stride + 1
    out = np.zeros((B, C, Ho, Wo))
    for ky in range(K):
        for kx in range(K):
            out += v[:, :, ky:ky + stride * (Ho - 1) + 1:stride, kx:kx + stride * (Wo - 1) + 1:stride]
    return out / (K * K)


def apply(model, t, x, mean, std, absolute=False):
    """Values and tangents of every statement for one raw input x.  Returns
    the hidden pre-activations z, their gradient rows G (raw units), their
    names, the logits f and Jacobian J, and zmag / fmag (magnitudes summed)."""
    shape = model["shape"]
    D = int(np.prod(shape))
    val = {model["input"]: ((x - mean) / std).reshape([1] + shape)}
    tan = {model["input"]: (np.eye(D) / std).reshape([D] + shape)}
    mag = {model["input"]: np.abs(val[model["input"]])}
    zs, Gs, mags, where = [], [], [], []
    for name, relu, (op, pos, kw) in model["stmts"]:
        args = [a for a in pos if isinstance(a, str) and a in val]
        nums = [int(a) for a in pos if isinstance(a, str) and a not in val]
        a = args[0]
        if op == "dense":
            W, b = t[name + ".weight"], t[name + ".bias"]
            v = val[a].reshape(1, -1) @ W.T + b
            # of the input, the tangents are eye(D) / std: their product
            # with W.T is W.T / std, without a D x D x n matrix product
            g = W.T / std if a == model["input"] else tan[a].reshape(D, -1) @ W.T
            m = mag[a].reshape(1, -1) @ np.abs(W).T + np.abs(b)
        elif op == "conv2d":
            W, b = t[name + ".weight"], t[name + ".bias"]
            stride, pad = int(kw.get("stride", 1)), int(kw.get("padding", 0))
            v = conv(val[a], W, b, stride, pad)
            g = conv(tan[a], W, None, stride, pad)
            m = conv(mag[a], np.abs(W), np.abs(b), stride, pad)
        elif op == "avgpool":
            K = int(kw.get("kernel", nums[0] if nums else 0))
            stride = int(kw.get("stride", K))
            v, g, m = avgpool(val[a], K, stride), avgpool(tan[a], K, stride), avgpool(mag[a], K, stride)
        elif op == "add":
            v, g, m = val[a] + val[args[1]], tan[a] + tan[args[1]], mag[a] + mag[args[1]]
        else:
            raise ValueError(f"unknown operation {op}")
        if relu:
            z = v.reshape(-1)
            zs.append(z)
            Gs.append(g.reshape(D, -1).T)
            mags.append(m.reshape(-1))
            where += [(name, j) for j in range(z.size)]
            mask = (v > 0).astype(np.float64)
            v, g = v * mask, g * mask
        val[name], tan[name], mag[name] = v, g, m
    out = model["output"]
    f = val[out].reshape(-1)
    J = tan[out].reshape(D, -1).T
    fmag = mag[out].reshape(-1)
    if zs:
        return np.concatenate(zs), np.concatenate(Gs, axis=0), np.concatenate(mags), where, f, J, fmag
    return np.zeros(0), np.zeros((0, D)), np.zeros(0), where, f, J, fmag


def certify(model, t, mean, std, x):
    """Reference certificate of one raw input x (float64 vector); tol_* are
    the magnitudes summed into the binding values, over their dual norms."""
    zall, Gall, zmag, where, f, J, fmag = apply(model, t, x, mean, std)
    out = {}
    for p in NORMS:
        if not len(zall):
            out["eps_" + p], out["bind_" + p], out["second_" + p] = math.inf, None, math.inf
            out["tol_" + p] = 0.0
            continue
        q = dual(Gall, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.where(q > 0, np.abs(zall) / q, np.inf)
        order = np.argsort(e, kind="stable")
        b = order[0]
        out["eps_" + p] = float(e[b])
        out["bind_" + p] = where[b] if np.isfinite(e[b]) else None
        out["second_" + p] = float(e[order[1]]) if len(order) > 1 else math.inf
        out["tol_" + p] = zmag[b] / q[b] if q[b] > 0 else 0.0
    if len(f) == 1:
        y = int(f[0] > 0)
        gaps = [(abs(f[0]), J[0], fmag[0])]
    else:
        y = int(np.argmax(f))
        gaps = [(f[y] - f[k], J[y] - J[k], fmag[y] + fmag[k]) for k in range(len(f)) if k != y]
    out["label"] = y
    for p in NORMS:
        r, tol = out["eps_" + p], out["tol_" + p]
        for gap, g, gm in gaps:
            d = dual(g, p)
            if d > 0 and gap / d < r:
                r, tol = gap / d, gm / d
        out["eps_pred_" + p] = r
        out["tol_pred_" + p] = tol
    out["logits"] = f
    return out


def rel(a, b):
    if a is None:
        a = math.inf
    if b is None:
        b = math.inf
    if a == b:
        return 0.0
    if math.isinf(a) or math.isinf(b):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-300)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--layers", help="comma-separated dense layer names, input to output")
    ap.add_argument("--mean", type=float, default=0.0)
    ap.add_argument("--std", type=float, default=1.0)
    ap.add_argument("--layout", help='JSON file {"layers": [...], "mean": m, "std": s}')
    ap.add_argument("--lln", help="an .lln file whose model block is the model (any graph of its operations)")
    ap.add_argument("--input", required=True)
    ap.add_argument("--certified", required=True, help="the certifier's jsonl output")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--zmag-tol", type=float, default=0.0,
                    help="allowance for rounding, a fraction of the magnitudes summed into the binding value")
    args = ap.parse_args()

    names, mean, std = None, args.mean, args.std
    if args.layout:
        with open(args.layout) as f:
            lay = json.load(f)
        names = lay["layers"]
        mean = float(lay.get("mean", 0.0))
        std = float(lay.get("std", 1.0))
    if args.layers:
        names = args.layers.split(",")
    if not names and not args.lln:
        ap.error("give --layers, --layout or --lln")

    t = read_safetensors(args.weights)
    if args.lln:
        model = parse_lln(args.lln)
        mean, std = model["mean"], model["std"]
        names = [n for n, _, (op, _, _) in model["stmts"] if op in ("dense", "conv2d")]
    else:
        model = dense_model(names, mean, std, t[names[0] + ".weight"].shape[1])
        for i in range(1, len(names)):
            w, prev = t[names[i] + ".weight"], t[names[i - 1] + ".weight"]
            if w.shape[1] != prev.shape[0]:
                sys.exit(f"{names[i]}.weight has {w.shape[1]} inputs, {names[i-1]} gives {prev.shape[0]}")
    # mean and std are the decimals as written (the certifier keeps them in
    # double and bounds the difference)
    expected = {n + s for n in names for s in (".weight", ".bias")}
    extra = set(t) - expected
    if extra:
        print(f"warning: tensors not in the layout: {sorted(extra)}", file=sys.stderr)
    x = read_inputs(args.input, int(np.prod(model["shape"])))

    with open(args.certified) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    if len(recs) != len(x):
        print(f"FAIL: {len(recs)} records for {len(x)} inputs")
        return 1

    maxerr = {k: 0.0 for k in ["eps_" + p for p in NORMS] + ["eps_pred_" + p for p in NORMS]}
    failures = []
    checked = {k: 0 for k in maxerr}
    bind_checked = 0
    for i, (xi, rec) in enumerate(zip(x, recs)):
        if rec.get("index") != i:
            failures.append(f"record {i}: index {rec.get('index')}")
        ref = certify(model, t, mean, std, xi)
        f = ref["logits"]
        srt = np.sort(f)[::-1]
        tie = len(f) > 1 and (srt[0] - srt[1]) < 1e-6 * max(1.0, abs(srt[0]))
        if not tie and rec["pred"] != ref["label"]:
            failures.append(f"record {i}: pred {rec['pred']}, reference {ref['label']}")
        for p in NORMS:
            for key in ("eps_" + p, "eps_pred_" + p):
                if key not in rec:
                    continue
                e = rel(rec[key], ref[key])
                checked[key] += 1
                maxerr[key] = max(maxerr[key], e)
                tol = args.zmag_tol * (ref["tol_" + key[4:]] if key.startswith("eps_pred_") else ref["tol_" + p])
                close = rec[key] is not None and math.isfinite(ref[key]) and \
                    abs(rec[key] - ref[key]) <= args.rtol * abs(ref[key]) + tol
                if not (e <= args.rtol or close):
                    failures.append(f"record {i}: {key} = {rec[key]}, reference {ref[key]!r} (rel err {e:.3g})")
            bkey = "bind_" + p
            if bkey in rec:
                near_tie = ref["second_" + p] - ref["eps_" + p] <= 1e-6 * ref["eps_" + p] + 2 * args.zmag_tol * ref["tol_" + p]
                if not near_tie:
                    bind_checked += 1
                    got = rec[bkey]
                    want = ref[bkey]
                    got = None if got is None else (got["layer"], got["index"])
                    if got != want:
                        failures.append(f"record {i}: {bkey} = {got}, reference {want}")
    for k, v in maxerr.items():
        if checked[k]:
            print(f"{k:12s} max rel err {v:.3g} over {checked[k]} inputs")
    print(f"binding neurons compared: {bind_checked}")
    if failures:
        for m in failures[:20]:
            print("FAIL:", m)
        print(f"FAIL: {len(failures)} mismatches (rtol {args.rtol:g})")
        return 1
    print(f"OK: {len(recs)} inputs agree to rtol {args.rtol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
