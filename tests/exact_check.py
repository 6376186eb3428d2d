#!/usr/bin/env python3
"""exact_check.py: a certifier's radii against the model as written, in exact
rational arithmetic.

Everything is a Fraction: the weights (float32, exact), normalize's mean and
std as the decimals the .lln file spells, each input as the decimals its CSV
line spells, each printed radius as the decimal printed.  For every record
and every hidden neuron h with pre-activation z_h and gradient g_h (raw
input units), and each printed radius r of the l_p ball (q its dual norm):

  soundness   r ||g_h||_q <= |z_h|            (l2: r^2 ||g_h||_2^2 <= z_h^2)
              eps_pred_p <= eps_p and r ||g_y - g_k||_q <= f_y - f_k
              t |g_h . d| <= |z_h| for the directional margin t, for every
              neuron whose z moves toward 0 along d
  tightness   r >= (1 - tol) times the exact radius, for records whose
              binding |z| is at least 1e-9 (well above the rounding error of
              these small networks)
  geometry    the point x - sign(z_b) (1 - 1e-9) r v, v the binding neuron's
              worst unit direction for the norm (for l2 g / N with N >= ||g||_2
              rational), has exactly the activation pattern of x

The model is any graph of dense, conv2d, avgpool, add, relu, rnn and last,
parsed from the .lln model block.  Usage:
  exact_check.py --lln M.lln --weights W.safetensors --input X.csv
                 --certified OUT.jsonl [--direction D.csv] [--tol 1e-5]
Exit status 0 when every check holds, 1 otherwise (each failure printed).
"""
import argparse
import json
import re
import struct
import sys
from fractions import Fraction as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    head = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        vals = struct.unpack("<%df" % ((b - a) // 4), body[a:b])
        out[name] = ([F(v) for v in vals], t["shape"])
    return out


def parse_model(path):
    """The model block: input name and shape, normalize's decimals, and the
    statements as (name, relu, op, operands, attributes)."""
    text = re.sub(r"(#|//)[^\n]*", "", open(path).read())
    block = re.search(r"model\s+\w+\s*\{(.*?)\}", text, re.S).group(1)
    model = {"mean": F(0), "std": F(1), "stmts": []}
    for stmt in [s.strip() for s in block.split(";") if s.strip()]:
        m = re.match(r"input\s+(\w+)\s*\[([^\]]*)\](.*)", stmt, re.S)
        if m:
            model["input"] = m.group(1)
            model["shape"] = [int(d) for d in m.group(2).split(",")]
            nm = re.search(r"normalize\s*\(([^)]*)\)", m.group(3))
            if nm:
                args = [a.split("=")[-1].strip() for a in nm.group(1).split(",")]
                model["mean"], model["std"] = F(args[0]), F(args[1])
            continue
        m = re.match(r"output\s+(\w+)", stmt)
        if m:
            model["output"] = m.group(1)
            continue
        name, expr = [s.strip() for s in stmt.split("=", 1)]
        relu = expr.startswith("relu(")
        if relu:
            expr = expr[5:-1].strip()
        op, args = re.match(r"(\w+)\s*\((.*)\)$", expr, re.S).groups()
        pos, kw = [], {}
        for a in [a.strip() for a in args.split(",")]:
            if "=" in a:
                k, v = [s.strip() for s in a.split("=")]
                kw[k] = v
            else:
                pos.append(a)
        model["stmts"].append((name, relu, op, pos, kw))
    return model


class Net:
    """Values as flat lists of Fractions with shapes (C, H, W); tangents as
    lists of rows over the D raw inputs (sparse dicts)."""

    def __init__(self, model, weights):
        self.m = model
        self.w = weights
        s = model["shape"]
        self.shape0 = (s[0], s[1], s[2]) if len(s) == 3 else (int(prod(s)), 1, 1)
        self.D = int(prod(s))

    def run(self, x, tangents=True):
        """z per relu'd statement, logits, and (with tangents) gradient rows of
        every hidden unit and logit with respect to the raw input."""
        m, D = self.m, self.D
        val = {m["input"]: ([(xi - m["mean"]) / m["std"] for xi in x], self.shape0)}
        tan = {m["input"]: [{d: 1 / m["std"]} for d in range(D)]} if tangents else {}
        zs, gs = [], []
        for name, relu, op, pos, kw in m["stmts"]:
            a = pos[0]
            if a.startswith("last("):   # the final state of an rnn: its last n values
                a = a[5:-1].strip()
                (v, (T, n, _)), t = val[a], tan.get(a)
                v, t = (v[-n:], (n, 1, 1)), t[-n:] if t else None
                val[name + "/last"], tan[name + "/last"] = v, t
                a = name + "/last"
            v, (C, H, W) = val[a]
            t = tan.get(a)
            if op == "rnn":   # h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), h_0 = 0
                Wi, (n, k) = self.w[name + ".weight_ih_l0"]
                Wh = self.w[name + ".weight_hh_l0"][0]
                bi, bh = self.w[name + ".bias_ih_l0"][0], self.w[name + ".bias_hh_l0"][0]
                T = len(v) // k
                z, h, g, gh = [], [F(0)] * n, [], [{}] * n
                for step in range(T):
                    xs = [(step * k + i) for i in range(k)]
                    zt = [bi[j] + bh[j] + sum(Wi[j * k + i] * v[xs[i]] for i in range(k)) +
                          sum(Wh[j * n + q] * h[q] for q in range(n)) for j in range(n)]
                    if tangents:
                        gt = [addrow(combine([(xs[i], Wi[j * k + i]) for i in range(k)], t),
                                     combine([(q, Wh[j * n + q]) for q in range(n)], gh)) for j in range(n)]
                        g += gt
                        gh = [r if o > 0 else {} for r, o in zip(gt, zt)]
                    z += zt
                    h = [o if o > 0 else F(0) for o in zt]
                zs.append(z)
                if tangents:
                    gs.append(g)
                val[name] = ([o if o > 0 else F(0) for o in z], (T, n, "steps"))
                if tangents:
                    tan[name] = [r if o > 0 else {} for r, o in zip(g, z)]
                continue
            if op == "dense":
                Wt, (n, k) = self.w[name + ".weight"]
                b = self.w[name + ".bias"][0]
                out = [b[j] + sum(Wt[j * k + i] * v[i] for i in range(k) if v[i]) for j in range(n)]
                shape = (n, 1, 1)
                terms = [[(i, Wt[j * k + i]) for i in range(k)] for j in range(n)]
            elif op == "conv2d":
                Wt, (oc, ic, K, _) = self.w[name + ".weight"]
                b = self.w[name + ".bias"][0]
                S, P = int(kw.get("stride", 1)), int(kw.get("padding", 0))
                oh, ow = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1
                terms = []
                for o in range(oc):
                    for yy in range(oh):
                        for xx in range(ow):
                            row = []
                            for c in range(ic):
                                for ky in range(K):
                                    for kx in range(K):
                                        iy, ix = yy * S + ky - P, xx * S + kx - P
                                        if 0 <= iy < H and 0 <= ix < W:
                                            row.append(((c * H + iy) * W + ix, Wt[((o * ic + c) * K + ky) * K + kx]))
                            terms.append(row)
                out = [b[j // (oh * ow)] + sum(w_ * v[i] for i, w_ in row) for j, row in enumerate(terms)]
                shape = (oc, oh, ow)
            elif op == "avgpool":
                K = int(kw.get("kernel", pos[1] if len(pos) > 1 else 0))
                S = int(kw.get("stride", K))
                oh, ow = (H - K) // S + 1, (W - K) // S + 1
                terms = [[((c * H + yy * S + ky) * W + xx * S + kx, F(1, K * K)) for ky in range(K) for kx in range(K)]
                         for c in range(C) for yy in range(oh) for xx in range(ow)]
                out = [sum(w_ * v[i] for i, w_ in row) for row in terms]
                shape = (C, oh, ow)
            elif op == "add":
                v2, _ = val[pos[1]]
                out = [p + q for p, q in zip(v, v2)]
                shape = (C, H, W)
                terms = None
            else:
                raise ValueError("unknown operation " + op)
            g = None
            if tangents:
                if op == "add":
                    t2 = tan[pos[1]]
                    g = [addrow(r1, r2) for r1, r2 in zip(t, t2)]
                else:
                    g = [combine(row, t) for row in terms]
            if relu:
                zs.append(out)
                if tangents:
                    gs.append(g)
                out = [o if o > 0 else F(0) for o in out]
                if tangents:
                    g = [gr if o > 0 else {} for gr, o in zip(g, out)]
            val[name] = (out, shape)
            if tangents:
                tan[name] = g
        f = val[m["output"]][0]
        J = tan[m["output"]] if tangents else None
        return zs, gs, f, J


def prod(s):
    p = 1
    for d in s:
        p *= d
    return p


def combine(row, t):
    out = {}
    for i, w in row:
        for d, v in t[i].items():
            out[d] = out.get(d, 0) + w * v
    return {d: v for d, v in out.items() if v}


def addrow(a, b):
    out = dict(a)
    for d, v in b.items():
        out[d] = out.get(d, 0) + v
    return {d: v for d, v in out.items() if v}


def sub(a, b):
    return addrow(a, {d: -v for d, v in b.items()})


def dual_ok(r, g, z, p):
    """r ||g||_q <= |z| exactly, q the dual of the l_p ball."""
    az = abs(z)
    if p == "linf":
        return r * sum(abs(v) for v in g.values()) <= az
    if p == "l1":
        return r * max([abs(v) for v in g.values()] or [0]) <= az
    return r * r * sum(v * v for v in g.values()) <= az * az


def radius_sq(g, z, p):
    """The exact radius |z| / ||g||_q (squared for l2), or None if g = 0."""
    if not g:
        return None
    if p == "linf":
        return abs(z) / sum(abs(v) for v in g.values())
    if p == "l1":
        return abs(z) / max(abs(v) for v in g.values())
    return z * z / sum(v * v for v in g.values())


def sqrt_up(q):
    """A rational upper bound of sqrt(q), within 1e-15 relative."""
    if q == 0:
        return F(0)
    s = F(int(float(q) ** 0.5 * (1 + 1e-12)) or 1) if q > 1 else F(float(q) ** 0.5) * (1 + F(1, 10 ** 12))
    for _ in range(3):
        s = (s + q / s) / 2  # Newton from above stays above
    return s * (1 + F(1, 10 ** 14))


def worst_direction(g, p):
    """A direction v with ||v||_p <= 1 and g . v = ||g||_q (l2: up to N)."""
    if p == "linf":
        return {d: F(1) if v > 0 else F(-1) for d, v in g.items()}
    if p == "l1":
        d = max(g, key=lambda k: abs(g[k]))
        return {d: F(1) if g[d] > 0 else F(-1)}
    n = sqrt_up(sum(v * v for v in g.values()))
    return {d: v / n for d, v in g.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lln", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--certified", required=True)
    ap.add_argument("--direction")
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    net = Net(parse_model(args.lln), read_safetensors(args.weights))
    xs = [[F(v) for v in line.strip().split(",")] for line in open(args.input)
          if line.strip() and not line.startswith("#")]
    dirs = None
    if args.direction:
        dirs = [[F(v) for v in line.strip().split(",")] for line in open(args.direction) if line.strip()]
    recs = [json.loads(line) for line in open(args.certified) if line.strip()]
    fails, checks, tight = 0, 0, 0
    tol = F(args.tol)

    def fail(msg):
        nonlocal fails
        fails += 1
        if fails <= 20:
            print("FAIL: " + msg)

    for rec in recs:
        i = rec["index"]
        x = xs[i]
        zs, gs, f, J = net.run(x)
        z = [v for layer in zs for v in layer]
        g = [r for layer in gs for r in layer]
        y = rec["pred"]
        for p in ("l1", "l2", "linf"):
            key = "eps_" + p
            if key not in rec:
                continue
            r = F(rec[key]) if rec[key] is not None else None
            rp = F(rec["eps_pred_" + p]) if rec["eps_pred_" + p] is not None else None
            if r is not None:
                for h in range(len(z)):
                    checks += 1
                    if not dual_ok(r, g[h], z[h], p):
                        fail(f"record {i}: {key} = {rec[key]} exceeds neuron {h}'s exact radius")
            if rp is not None:
                if r is not None and rp > r:
                    fail(f"record {i}: eps_pred_{p} > {key}")
                pairs = [(abs(f[0]), J[0])] if len(f) == 1 else [(f[y] - f[k], sub(J[y], J[k])) for k in range(len(f)) if k != y]
                for gap, gd in pairs:
                    checks += 1
                    if gap < 0 or not dual_ok(rp, gd, gap, p):
                        fail(f"record {i}: eps_pred_{p} = {rec['eps_pred_' + p]} exceeds a class's exact radius")
            if r is None or not z:
                continue
            # tightness and geometry, at the exact binding neuron
            radii = [(radius_sq(g[h], z[h], p), h) for h in range(len(z)) if g[h]]
            ex, hb = min(radii)
            exact = ex if p != "l2" else None
            if abs(z[hb]) >= F(1, 10 ** 9):
                lo = (1 - tol) ** 2 * ex if p == "l2" else (1 - tol) * exact
                if (r * r if p == "l2" else r) < lo:
                    fail(f"record {i}: {key} = {rec[key]} is not within {args.tol} of the exact radius "
                         f"{float(ex) ** (0.5 if p == 'l2' else 1):.17g}")
                else:
                    tight += 1
            v = worst_direction(g[hb], p)
            s = -1 if z[hb] > 0 else 1
            step = s * (1 - F(1, 10 ** 9)) * r
            xp = list(x)
            for d, vd in v.items():
                xp[d] += step * vd
            zp, _, _, _ = net.run(xp, tangents=False)
            zp = [v for layer in zp for v in layer]
            if any((a > 0) != (b > 0) for a, b in zip(z, zp)):
                fail(f"record {i}: the point at (1 - 1e-9) {key} toward neuron {hb} changes the pattern")
        if dirs is not None and rec.get("eps_dir") is not None:
            d = dirs[i if len(dirs) > 1 else 0]
            t = F(rec["eps_dir"])
            for h in range(len(z)):
                rate = sum(v * d[k] for k, v in g[h].items())
                if (z[h] > 0 and rate < 0) or (z[h] <= 0 and rate > 0):
                    checks += 1
                    if t * abs(rate) > abs(z[h]):
                        fail(f"record {i}: eps_dir = {rec['eps_dir']} passes neuron {h}'s boundary")
    print(f"exact: {len(recs)} records, {checks} inequalities checked in rational arithmetic, "
          f"{tight} radii within {args.tol} of exact, {fails} failures")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
