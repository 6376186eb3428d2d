#!/usr/bin/env python3
"""merge_check.py: `llnc merge` joins the shard files of a certifier run.

Run by ctest (test "merge"): merge_check.py LLNC WORKDIR.  For four runs
(a labeled dense model with --eps and --direction, whose shards come from a
built certifier and from llnc certify alike; the residual CNN of
tests/data/cnn.lln with --labels, on 2 inputs so that one of 3 shards is
empty; the stacked RNN of tests/data/rnn.lln with --norms 1,inf; a
one-logit model on inputs where neurons sit exactly at 0, so "undecided"),
each certified unsharded and as 3 shards with --shard I/3 --shard-out
(docs/scale.md), checks that `llnc merge` of the shard files, given in any
order, prints the unsharded records in each --format and the unsharded
--summary in each format, byte for byte, also with -o.  Then that it
refuses, exit 1, with the file and record named and no output written:
a missing, repeated or duplicated shard, shards of another model, other
weights, another input or other settings (norms, radii, labels), and
records that are not JSON, cut short, missing a field or holding an
unknown one, out of order, repeated, missing, outside their shard, or
whose answer at a radius disagrees with their radius.
"""
import glob
import json
import os
import random
import shutil
import struct
import sys

from checks import check, failures, run

LLNC, WORK = sys.argv[1], sys.argv[2]
SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
FORMATS = ("jsonl", "csv", "table")


def write(name, text):
    with open(name, "w") as f:
        f.write(text)
    return name


def read(name):
    with open(name) as f:
        return f.read()


def rows(name, n, dim, seed, label=None, equal=0):
    """n CSV rows of dim values (the first `equal` rows of one value repeated), with a class
    label first when label is set."""
    rnd = random.Random(seed)
    lines = []
    for i in range(n):
        x = [0.1 + 0.3 * i] * dim if i < equal else [rnd.uniform(0, 1) for _ in range(dim)]
        lines.append(("%d," % rnd.randrange(label) if label else "") + ",".join("%.6f" % v for v in x))
    return write(name, "\n".join(lines) + "\n")


def undecided(path):
    """The weights of one.lln made such that an input (a, a) gives every neuron
    of h a pre-activation of exactly 0 with a rounding error bound above 0:
    h's rows (w, -w) and no biases."""
    with open(path, "rb") as f:
        blob = bytearray(f.read())
    n = struct.unpack("<Q", blob[:8])[0]
    for name, t in json.loads(blob[8:8 + n]).items():
        if name == "__metadata__":
            continue
        a, b = (8 + n + o for o in t["data_offsets"])
        if name.endswith(".bias"):
            blob[a:b] = bytes(b - a)
        elif t["shape"] == [5, 2]:
            w = struct.unpack("<10f", blob[a:b])
            blob[a:b] = struct.pack("<10f", *(v for j in range(5) for v in (w[2 * j], -w[2 * j])))
    with open(path, "wb") as f:
        f.write(blob)


write("dense.lln", "model dense {\n  input x[6];\n  h1 = relu(dense(x, 16));\n  h2 = relu(dense(h1, 12));\n"
      "  out = dense(h2, 3);\n  output out;\n}\n")
write("one.lln", "model one {\n  input x[2];\n  h = relu(dense(x, 5));\n  y = dense(h, 1);\n  output y;\n}\nobjective {\n  loss = sigmoid_cross_entropy;\n}\n")
run([LLNC, "init", "dense.lln", "--seed", "1", "-o", "dense.safetensors"])
run([LLNC, "init", "dense.lln", "--seed", "2", "-o", "dense2.safetensors"])
run([LLNC, "init", SRC + "/tests/data/cnn.lln", "--seed", "3", "-o", "cnn.safetensors"])
run([LLNC, "init", SRC + "/tests/data/rnn.lln", "--seed", "4", "-o", "rnn.safetensors"])
run([LLNC, "init", "one.lln", "--seed", "5", "-o", "one.safetensors"])
undecided("one.safetensors")
# built certifiers run the shards (a JIT compile per run would cost a second
# each); llnc certify writes one shard of the dense run, whose shard files
# must not depend on which of the two certified them
for model, weights, exe in (("dense.lln", "dense", "dense"), ("dense.lln", "dense2", "dense2"),
                            (SRC + "/tests/data/cnn.lln", "cnn", "cnn"), (SRC + "/tests/data/rnn.lln", "rnn", "rnn"),
                            ("one.lln", "one", "one")):
    run([LLNC, "build", model, "--certifier", "--weights", weights + ".safetensors", "-o", exe + "-cert"])
rows("d31.csv", 31, 6, 1, label=3)
rows("d31b.csv", 31, 6, 9, label=3)
write("dir.csv", "1,0,-1,0.5,0,0.25\n")
rows("c2.csv", 2, 144, 2)
write("c2-labels.csv", "2\n0\n")
rows("r7.csv", 7, 12, 3)
rows("o5.csv", 5, 2, 4, equal=2)


def certifier(exe, jit=None):
    """The command that certifies shard i (None: the unsharded run)."""
    return lambda i: ([LLNC, "certify"] + jit if jit and i == 1 else ["./" + exe])


RUNS = {  # name: (certifier, flags)
    "dense": (certifier("dense-cert", ["dense.lln", "--weights", "dense.safetensors"]),
              ["--eps", "0,0.01,0.05", "--norm", "2", "--direction", "dir.csv", "d31.csv"]),
    "cnn": (certifier("cnn-cert"), ["--labels", "c2-labels.csv", "c2.csv"]),
    "rnn": (certifier("rnn-cert"), ["--norms", "1,inf", "r7.csv"]),
    "one": (certifier("one-cert"), ["--eps", "0,0.1", "--norm", "inf", "o5.csv"]),
}


def shards(tag, cert, flags, which=(0, 1, 2)):
    for i in which:
        run(cert(i) + ["--shard", "%d/3" % i, "--shard-out", "%s.%d" % (tag, i)] + flags)
    return ["%s.%d" % (tag, i) for i in which]


for name, (cert, flags) in RUNS.items():
    files = shards(name, cert, flags)
    given = [files[2], files[0], files[1]]   # any order
    for fmt in FORMATS:
        whole = run(cert(None) + ["--format", fmt] + flags).stdout
        got = run([LLNC, "merge", "--format", fmt] + given)
        check(got.stdout == whole and got.stderr == "", "%s: llnc merge --format %s = the unsharded records" % (name, fmt))
        summary = run(cert(None) + ["--summary", "--format", fmt] + flags).stdout
        got = run([LLNC, "merge", "--summary", "--format", fmt] + given).stdout
        check(got == summary, "%s: llnc merge --summary --format %s = the unsharded summary" % (name, fmt))
    got = run([LLNC, "merge", "--summary", "-o", name + ".merged"] + given).stdout
    check(got == run(cert(None) + ["--summary"] + flags).stdout and
          read(name + ".merged") == run(cert(None) + flags).stdout,
          "%s: llnc merge --summary -o OUT: the records in OUT, the summary on stdout" % name)

# what the runs hold that the checks above need
check(read("cnn.0").count("\n") == 1, "cnn: shard 0/3 of 2 inputs holds no record")
check('"undecided":' in read("one.0") + read("one.1"), "one: records with undecided neurons")
check('"step":' in read("rnn.2") and '"channel":' in read("cnn.2"), "rnn and cnn: bindings in sequences and images")
run(["./dense-cert", "--shard-out", "whole.0"] + RUNS["dense"][1])
check(run([LLNC, "merge", "whole.0"]).stdout == run(["./dense-cert"] + RUNS["dense"][1]).stdout,
      "--shard-out without --shard: one shard, 0/1, merged alone")


# ---- refusals ----
def refused(argv, want, what, out=None):
    before = read(out) if out and os.path.exists(out) else None
    p = run([LLNC, "merge"] + argv, ok=False)
    kept = out is None or (read(out) if os.path.exists(out) else None) == before
    check(p.returncode == 1 and want in p.stderr and p.stdout == "" and kept,
          "%s: refused with '%s'" % (what, want) + ("" if p.returncode == 1 and want in p.stderr else
                                                     " (exit %d: %s)" % (p.returncode, p.stderr.strip())))


D = RUNS["dense"]
dense = ["dense.0", "dense.1", "dense.2"]
write("kept.jsonl", "an earlier output\n")
refused(["-o", "kept.jsonl", "dense.0", "dense.2"], "shard 1/3 is missing", "a missing shard", "kept.jsonl")
refused(dense + ["dense.1"], "dense.1: given twice", "a shard given twice")
shutil.copy("dense.1", "copy.1")
refused(dense + ["copy.1"], "copy.1: shard 1/3 again (dense.1 is shard 1/3 too)", "a shard twice, in two files")
refused(["--summary", "dense.0", "dense.1", "cnn.2"], "not shards of one run", "a shard of another model")
shards("w2", certifier("dense2-cert"), D[1], [1])
refused(["dense.0", "w2.1", "dense.2"], "w2.1: from model 'dense' (weights digest", "a shard of other weights")
shards("in2", D[0], D[1][:-1] + ["d31b.csv"], [2])
refused(["dense.0", "dense.1", "in2.2"], "an INPUT of 31 examples (digest", "a shard of another input")
shards("norms", D[0], ["--norms", "2"] + D[1], [2])
refused(["dense.0", "dense.1", "norms.2"], "certified with --norms 2, labels", "a shard of other norms")
shards("eps", D[0], ["--eps", "0,0.01"] + D[1][2:], [2])
refused(["dense.0", "dense.1", "eps.2"], "--eps 0,0.01 --norm 2, but dense.0 with", "a shard of other radii")
write("nolabels.csv", "".join(l.split(",", 1)[1] + "\n" for l in read("d31.csv").splitlines()))
shards("nolab", D[0], D[1][:-1] + ["nolabels.csv"], [2])
refused(["dense.0", "dense.1", "nolab.2"], "no labels, --direction", "a shard without labels")
refused(["dense.0", "d31.csv", "dense.2"], "d31.csv: not a shard file", "a file that is not a shard file")
write("out.jsonl", run(["./dense-cert"] + D[1]).stdout)
refused(["out.jsonl"], "out.jsonl: not a shard file", "a certifier's jsonl output")

# records: dense.1 holds indices 10 to 19, lines 2 to 11
lines = read("dense.1").splitlines(True)


def bad_shard(what, want, edit):
    body = lines[:]
    edit(body)
    write("bad.1", "".join(body))
    refused(["-o", "kept.jsonl", "dense.0", "bad.1", "dense.2"], "bad.1: " + want, what, "kept.jsonl")
    refused(["--summary", "dense.0", "bad.1", "dense.2"], "bad.1: " + want, what + " (--summary)")


def setl(i, text):
    return lambda b: b.__setitem__(i, text)


bad_shard("a line that is not JSON", "record 3: not a JSON object", setl(3, lines[3][:40] + "\n"))
bad_shard("a record cut short", "record 10: cut short (no newline", setl(10, lines[10][:-1]))
bad_shard("a missing last record", "holds 9 records, but shard 1/3 has 10 (indices 10 to 19)", lambda b: b.pop())
bad_shard("a missing record", "record 5: index 15, but 14 is missing", lambda b: b.pop(5))
bad_shard("a repeated record", "record 6: index 14 again", lambda b: b.insert(6, b[5]))
bad_shard("a record of another shard", "record 1: index 9 is not in shard 1/3 (indices 10 to 19)",
          setl(1, lines[1].replace('"index":10,', '"index":9,')))
bad_shard("a missing field", "record 2: no radius in 'eps_pred_l1'",
          setl(2, lines[2].replace('"eps_pred_l1"', '"eps_pred_lx"')))
bad_shard("an unknown field", "record 2: unknown field 'extra'", setl(2, lines[2].replace('{"index"', '{"extra":1,"index"')))
bad_shard("a bad pattern", "record 7: not 16 hex digits in 'pattern'", setl(7, lines[7].replace('"pattern":"', '"pattern":"x')))
bad_shard("a label that is not a class", "record 2: not a class of the model in 'label'",
          setl(2, lines[2].replace('"label":', '"label":7') if '"label":' in lines[2] else lines[2]))
flip = next(i for i in range(1, len(lines)) if '"0":false' in lines[i])   # a wrong prediction
bad_shard("an answer at a radius its radius contradicts", "record %d: 'certified' at 0 is not what eps_pred_l2" % flip,
          setl(flip, lines[flip].replace('"0":false', '"0":true')))
check(not glob.glob(".*lln-tmp*"), "no temporary file left behind")

# usage
p = run([LLNC, "merge", "--help"])
check(p.returncode == 0 and p.stdout.startswith("usage: llnc merge"), "llnc merge --help")
check("merge" in run([LLNC, "--help"]).stdout, "llnc --help lists merge")
for argv, want in (([], "usage: llnc merge"), (["--format", "xml", "dense.0"], "--format takes jsonl, csv or table"),
                   (["-o", "dense.0"] + dense, "are the same file"), (["--sumary", "dense.0"], "did you mean '--summary'")):
    p = run([LLNC, "merge"] + argv, ok=False)
    check(p.returncode == 2 and want in p.stderr, "llnc merge %s: usage error '%s'" % (" ".join(argv), want))
p = run(["./dense-cert", "--shard", "0/3", "--shard-out", "x.0", "-o", "x.jsonl"] + D[1], ok=False)
check(p.returncode == 2 and "give one of the two" in p.stderr, "the certifier: --shard-out with -o is a usage error")
p = run(["./dense-cert", "--shard-out", "x.0", "-"], ok=False)
check(p.returncode == 2 and "not stdin" in p.stderr, "the certifier: --shard-out of stdin is a usage error")

if failures:
    print("%d FAILED" % len(failures))
    sys.exit(1)
print("all passed")
