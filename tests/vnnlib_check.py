#!/usr/bin/python3
"""vnnlib_check.py: a VNN-LIB property of lln's certifier tried on an ONNX graph, for tests/test_interop.c.

    vnnlib_check.py NET.onnx PROP.vnnlib [SAMPLES]

Reads the input box and the output disjunction that --vnnlib writes (the
subset of VNN-LIB it uses: bounds on X_i, one disjunction of conjunctions
of (>= Y_a Y_b), or one bound on Y_0), evaluates the graph in float64 with
tests/onnx_check.py at the box's centre, at SAMPLES random points and at as
many random vertices, and exits 1 if any of them satisfies the property
(a counterexample to the certificate).  Prints the number of points tried
and the smallest margin by which the property failed.
"""
import os
import re
import sys

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_check import run  # noqa: E402


def parse(path):
    text = open(path).read()
    lo, hi = {}, {}
    for op, i, v in re.findall(r"\(assert \((>=|<=) X_(\d+) (-?[0-9.]+)\)\)", text):
        (lo if op == ">=" else hi)[int(i)] = float(v)
    n = len(lo)
    assert n == len(hi) and sorted(lo) == list(range(n)), "bounds of every X_i"
    pairs = [(int(a), int(b)) for a, b in re.findall(r"\(and \(>= Y_(\d+) Y_(\d+)\)\)", text)]
    single = re.findall(r"\(assert \((>=|<=) Y_0 0\)\)", text)
    return np.array([lo[i] for i in range(n)]), np.array([hi[i] for i in range(n)]), pairs, single


def slack(y, pairs, single):
    """How far the outputs y are from satisfying the property (> 0: not)."""
    if single:
        return -y[0] if single[0] == ">=" else y[0]
    return min(y[b] - y[a] for a, b in pairs)


def main():
    model = onnx.load(sys.argv[1])
    lo, hi, pairs, single = parse(sys.argv[2])
    samples = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    rng = np.random.default_rng(0)
    points = [(lo + hi) / 2]
    points += [lo + (hi - lo) * rng.random(len(lo)) for _ in range(samples)]
    points += [np.where(rng.random(len(lo)) < 0.5, lo, hi) for _ in range(samples)]
    worst = np.inf
    for x in points:
        logits, _, _ = run(model, x)
        s = slack(logits, pairs, single)
        worst = min(worst, s)
        if s <= 0:
            print("counterexample at", list(x), "logits", list(logits))
            sys.exit(1)
    print(len(points), "%.17g" % worst)


if __name__ == "__main__":
    main()
