#!/usr/bin/env python3
"""independent_check.py: an independent double-precision check of a certifier.

Reads the weights (a safetensors file, parsed here from its header), the
model layout (dense layers in order, each followed by a ReLU except the
last; normalize mean and std), the inputs (.npy or .csv) and a certifier's
jsonl output, recomputes in float64 with numpy only

  forward      z^i = W^i a^{i-1} + b^i, a^i = relu(z^i), logits = W a + b
  Jacobians    J^1 = W^1 / std, J^i = W^i diag(z^{i-1} > 0) J^{i-1}
  margins      eps_p = min_h |z_h| / ||g_h||_q  (q dual to p; g = 0 never binds)
  prediction   min(eps_p, min_{k != y} (f_y - f_k) / ||grad (f_y - f_k)||_q)
               (one logit: |f| / ||grad f||_q, label = f > 0)

and compares label, eps_l1 / eps_l2 / eps_linf, their binding neurons and
eps_pred_* with the jsonl records to a relative tolerance.  Prints the
maximum relative error per quantity; exits 1 on a mismatch, 2 on bad usage.

  python3 tests/independent_check.py --weights W.safetensors \\
      --layers fc1,fc2,fc3,fc4,fc5 --mean 0.1307 --std 0.3081 \\
      --input X.npy --certified out.jsonl [--rtol 1e-4]

--layout FILE.json may give {"layers": [...], "mean": m, "std": s} instead.
"""
import argparse
import json
import math
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


def read_inputs(path, dim):
    if path.endswith(".npy"):
        x = np.load(path, allow_pickle=False)
        x = np.asarray(x, dtype=np.float32).reshape(x.shape[0], -1)
    else:
        rows = []
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                rows.append([float(v) for v in line.split(",")])
        x = np.asarray(rows, dtype=np.float32)
    if x.shape[1] != dim:
        raise ValueError(f"{path}: {x.shape[1]} values per example, the model takes {dim}")
    return x.astype(np.float64)  # float32 inputs, exactly as the certifier sees them


def dual(v, p):
    """Dual norm of the rows of v for the l_p ball (p in l1, l2, linf)."""
    a = np.abs(v)
    if p == "l1":
        return a.max(axis=-1)
    if p == "l2":
        return np.sqrt((a * a).sum(axis=-1))
    return a.sum(axis=-1)


def certify(Ws, bs, names, mean, std, x):
    """Reference certificate of one raw input x (float64 vector)."""
    a = (x - mean) / std
    J = None
    zs, Gs, where = [], [], []
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = W @ a + b
        if i == 0:
            Jn = W / std
        else:
            Jn = W @ (mask[:, None] * J)
        J = Jn
        if i < len(Ws) - 1:
            zs.append(z)
            Gs.append(J)
            where += [(names[i], j) for j in range(len(z))]
            mask = (z > 0).astype(np.float64)
            a = np.maximum(z, 0)
        else:
            f = z
    out = {}
    if zs:
        zall = np.concatenate(zs)
        Gall = np.concatenate(Gs, axis=0)
    for p in NORMS:
        if not zs:
            out["eps_" + p], out["bind_" + p], out["second_" + p] = math.inf, None, math.inf
            continue
        q = dual(Gall, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.where(q > 0, np.abs(zall) / q, np.inf)
        order = np.argsort(e, kind="stable")
        out["eps_" + p] = float(e[order[0]])
        out["bind_" + p] = where[order[0]] if np.isfinite(e[order[0]]) else None
        out["second_" + p] = float(e[order[1]]) if len(order) > 1 else math.inf
    if len(f) == 1:
        y = int(f[0] > 0)
        gaps = [(abs(f[0]), J[0])]
    else:
        y = int(np.argmax(f))
        gaps = [(f[y] - f[k], J[y] - J[k]) for k in range(len(f)) if k != y]
    out["label"] = y
    for p in NORMS:
        r = out["eps_" + p]
        for gap, g in gaps:
            d = dual(g, p)
            if d > 0:
                r = min(r, gap / d)
        out["eps_pred_" + p] = r
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
    ap.add_argument("--input", required=True)
    ap.add_argument("--certified", required=True, help="the certifier's jsonl output")
    ap.add_argument("--rtol", type=float, default=1e-4)
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
    if not names:
        ap.error("give --layers or --layout")
    # the certifier keeps mean and std as float32
    mean = float(np.float32(mean))
    std = float(np.float32(std))

    t = read_safetensors(args.weights)
    Ws = [t[n + ".weight"] for n in names]
    bs = [t[n + ".bias"] for n in names]
    expected = {n + s for n in names for s in (".weight", ".bias")}
    extra = set(t) - expected
    if extra:
        print(f"warning: tensors not in the layout: {sorted(extra)}", file=sys.stderr)
    for i in range(1, len(Ws)):
        if Ws[i].shape[1] != Ws[i - 1].shape[0]:
            sys.exit(f"{names[i]}.weight has {Ws[i].shape[1]} inputs, {names[i-1]} gives {Ws[i-1].shape[0]}")
    x = read_inputs(args.input, Ws[0].shape[1])

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
        ref = certify(Ws, bs, names, mean, std, xi)
        f = ref["logits"]
        srt = np.sort(f)[::-1]
        tie = len(f) > 1 and (srt[0] - srt[1]) < 1e-6 * max(1.0, abs(srt[0]))
        if not tie and rec["label"] != ref["label"]:
            failures.append(f"record {i}: label {rec['label']}, reference {ref['label']}")
        for p in NORMS:
            for key in ("eps_" + p, "eps_pred_" + p):
                if key not in rec:
                    continue
                e = rel(rec[key], ref[key])
                checked[key] += 1
                maxerr[key] = max(maxerr[key], e)
                if not e <= args.rtol:
                    failures.append(f"record {i}: {key} = {rec[key]}, reference {ref[key]!r} (rel err {e:.3g})")
            bkey = "bind_" + p
            if bkey in rec:
                near_tie = ref["second_" + p] - ref["eps_" + p] <= 1e-6 * ref["eps_" + p]
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
