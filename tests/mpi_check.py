#!/usr/bin/env python3
"""mpi_check.py: data-parallel training and sharded certification under MPI.

Run by ctest (test "mpi"): mpi_check.py LLNC MPIRUN WORKDIR, MPIRUN "none"
when lln was built without MPI, which skips the MPI checks with a message
(exit 77).  Each case trains small models with `llnc train` as one process
and as K ranks of `mpirun -np K` and checks (docs/scale.md):
  - the loss of every step (one step per epoch: batch = the training set)
    agrees within 1e-5 relative for 50 steps, for vanilla, exact and
    approximate ROLL and the distance regularizer, with SGD (plain, momentum,
    Nesterov), Adam and AMSGrad, K = 2 and 3 on 31 examples (neither divides);
  - with several batches per epoch and a last batch of one example (a rank
    with nothing to do), the per-epoch losses and the final weights agree;
  - standalone trainers (llnc build --trainer) run the K > 1 cases, and
    llnc train one of them, against llnc train's K = 1;
  - a run resumed under mpirun equals the run that was not stopped, bit
    for bit, and a one-process run resumes a 2-rank checkpoint;
  - a rank that reads bad data stops every rank with its error, and ranks
    given different data refuse to train, with no output file and no hang;
  - certification sharded with --shard I/N, and by mpirun, equals the
    unsharded output, and --summary over ranks equals the unsharded one.
The --shard checks need no MPI and run in any build.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys

import checks
from checks import check, failures

LLNC, MPIRUN, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(WORK, ignore_errors=True)   # no trainer or output of an earlier build
os.makedirs(WORK, exist_ok=True)
os.chdir(WORK)
# mpirun as root (CI containers) and more ranks than cores (2-core runners);
# the real path: Open MPI takes the launcher's directory's parent as its
# installation prefix, which for /bin/mpirun (usrmerge) is "/", refused
MPI = [os.path.realpath(MPIRUN), "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
ENV = dict(os.environ, OMPI_MCA_btl="self,vader", OMPI_MCA_rmaps_base_oversubscribe="1")
# Under LLN_SANITIZE: Open MPI keeps allocations of MPI_Init past
# MPI_Finalize, in components it has unloaded by then, so LeakSanitizer can
# neither attribute nor suppress them; processes in an MPI job run without
# leak checking (every other ASan check stays on), the one-process runs of
# this test and every other test with it.
MPI_ENV = dict(ENV, ASAN_OPTIONS=ENV.get("ASAN_OPTIONS", "").replace("detect_leaks=1", "detect_leaks=0"))


def run(argv, ok=True, timeout=120):
    return checks.run(argv, ok, timeout, MPI_ENV if argv[0] == MPI[0] else ENV)


def model(name, regularizer):
    with open(name + ".lln", "w") as f:
        f.write("model %s {\n  input x[6];\n  h1 = relu(dense(x, 16));\n  h2 = relu(dense(h1, 12));\n"
                "  out = dense(h2, 3);\n  output out;\n}\nobjective {\n  loss = cross_entropy;\n"
                "  regularizer = %s;\n}\n" % (name, regularizer))
    return name + ".lln"


def data(name, n, seed, bad_record=0):
    rnd = random.Random(seed)
    with open(name, "w") as f:
        for i in range(n):
            x = [rnd.uniform(-1, 1) for _ in range(6)]
            y = (x[0] + x[1] > 0) + (x[2] > 0.5)
            vals = ",".join("%.6f" % v for v in x) if i + 1 != bad_record else "0.1,oops"
            f.write("%d,%s\n" % (y, vals))
    return name


def log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def weights(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        body = f.read()
    out = {}
    for k, v in head.items():
        if k != "__metadata__":
            a, b = v["data_offsets"]
            out[k] = struct.unpack("<%df" % ((b - a) // 4), body[a:b])
    return out


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def max_rel_weights(a, b):
    wa, wb = weights(a), weights(b)
    return max(abs(x - y) / max(1.0, abs(x), abs(y)) for k in wa for x, y in zip(wa[k], wb[k]))


def train(k, lln, args, tag, threads=1, llnc=False):
    """K ranks of the model's trainer (built once: no JIT per rank), or of llnc train."""
    exe = "./" + lln.replace(".lln", "-trainer")
    if not llnc and not os.path.exists(exe):
        run([LLNC, "build", lln, "--trainer", "-o", exe])
    cmd = ([LLNC, "train", lln] if llnc else [exe]) + args + [
        "--threads", str(threads), "-o", tag + ".safetensors", "--log", tag + ".log"]
    run((MPI + ["-np", str(k)] if k > 1 else []) + cmd)
    return log(tag + ".log")


# --- certification in shards (no MPI needed) ---
data("d31.csv", 31, 1)
data("d37.csv", 37, 2)
model("cert", "roll(lambda = 0.5, C = 2)")
run([LLNC, "train", "cert.lln", "--data", "d37.csv", "--epochs", "3", "--batch", "8", "--optimizer", "adam",
     "--lr", "0.01", "-o", "cert.safetensors"])
run([LLNC, "build", "cert.lln", "--certifier", "--weights", "cert.safetensors", "-o", "certifier"])
CERT = ["--eps", "0.01,0.1", "--norm", "2", "d31.csv"]
for fmt in ("jsonl", "csv", "table"):
    whole = run(["./certifier", "--format", fmt] + CERT).stdout
    for n in (2, 4, 40):
        parts = "".join(run(["./certifier", "--format", fmt, "--shard", "%d/%d" % (i, n)] + CERT).stdout
                        for i in range(n))
        check(parts == whole, "--shard I/%d (%s): the shards' outputs in order equal the unsharded one" % (n, fmt))
p = run(["./certifier", "--shard", "2/2"] + CERT, ok=False)
check(p.returncode == 2 and "--shard takes I/N" in p.stderr, "--shard 2/2 is refused")
if MPIRUN == "none":
    print("SKIPPED: lln was built without MPI (install libopenmpi-dev and openmpi-bin; scripts/deps does), "
          "so data-parallel training and certification under mpirun are not tested")
    sys.exit(1 if failures else 77)

# --- llnc certify under mpirun: one output, in input order; an exact summary ---
CC = [LLNC, "certify", "cert.lln", "--weights", "cert.safetensors"]
for fmt in ("jsonl", "csv"):
    whole = run(CC + ["--format", fmt] + CERT).stdout
    for k in ((2,) if fmt == "csv" else (3,)):
        got = run(MPI + ["-np", str(k)] + CC + ["--format", fmt] + CERT).stdout
        check(got == whole, "llnc certify under mpirun -np %d (%s): the unsharded output" % (k, fmt))
summary = run(CC + ["--summary"] + CERT).stdout
for k in (2, 3):
    got = run(MPI + ["-np", str(k)] + CC + ["--summary", "-o", "records%d.jsonl" % k] + CERT).stdout
    check(got == summary, "llnc certify --summary under mpirun -np %d: the unsharded summary" % k)
    with open("records%d.jsonl" % k) as f:
        check(f.read() == run(CC + CERT).stdout, "llnc certify -o under mpirun -np %d: the unsharded file" % k)
p = run(MPI + ["-np", "2"] + CC + ["--shard-out", "part.0"] + CERT, ok=False)
check(p.returncode != 0 and "--shard-out: under mpirun rank 0 writes the one output" in p.stderr,
      "llnc certify --shard-out under mpirun is refused")


# --- one step per epoch: the loss of every step, 50 steps ---
cases = [("vanilla", "none", ["--optimizer", "sgd", "--lr", "0.2", "--momentum", "0.9", "--nesterov", "on"]),
         ("roll", "roll(lambda = 0.5, C = 2)", ["--optimizer", "adam", "--lr", "0.01"]),
         ("approx", "roll(lambda = 0.5, C = 2, samples = 3)", ["--optimizer", "amsgrad", "--lr", "0.01"]),
         ("distance", "distance(lambda = 0.5)", ["--optimizer", "sgd", "--lr", "0.05"])]
for name, reg, opt in cases:
    lln = model(name, reg)
    args = ["--data", "d31.csv", "--batch", "31", "--epochs", "50", "--seed", "5"] + opt
    ref = train(1, lln, args, name + "1", llnc=True)
    runs = ((2, 1, False),) + (((2, 1, True), (3, 1, False), (2, 2, False)) if name == "roll"
                               else ((3, 1, False),) if name == "approx" else ())
    for k, threads, llnc in runs:
        got = train(k, lln, args, "%s%d_%d%s" % (name, k, threads, llnc), threads, llnc)
        worst = max(rel(a["train_loss"], b["train_loss"]) for a, b in zip(ref, got))
        check(len(got) == 50 and worst <= 1e-5,
              "%s: K=%d (%s, --threads %d) per-step loss within 1e-5 of K=1 over 50 steps (worst %.2g)"
              % (name, k, "llnc train" if llnc else "trainer", threads, worst))
        check(all(a["train_accuracy"] == b["train_accuracy"] for a, b in zip(ref, got)),
              "%s: K=%d per-step accuracy equal to K=1" % (name, k))
        check(got[0].get("ranks") == k and got[0].get("allreduce_floats", 0) >= 16 * 6 + 4,
              "%s: K=%d: the log reports the ranks and the allreduce" % (name, k))

# --- several batches per epoch, a last batch of one example ---
lln = "roll.lln"
args = ["--data", "d37.csv", "--batch", "8", "--epochs", "6", "--seed", "3", "--optimizer", "adam",
        "--lr", "0.01", "--valid", "4"]
ref = train(1, lln, args, "multi1")
for k in (2, 3):
    got = train(k, lln, args, "multi%d" % k)
    worst = max(rel(a["train_loss"], b["train_loss"]) for a, b in zip(ref, got))
    vworst = max(rel(a["valid"]["loss"], b["valid"]["loss"]) for a, b in zip(ref, got))
    check(worst <= 1e-5 and vworst <= 1e-5,
          "batch 8 over 33 examples, K=%d: epoch losses within 1e-5 (train %.2g, valid %.2g)"
          % (k, worst, vworst))
    d = max_rel_weights("multi1.safetensors", "multi%d.safetensors" % k)
    check(d <= 1e-5, "batch 8 over 33 examples, K=%d: final weights within 1e-5 (%.2g)" % (k, d))

# --- resume under mpirun ---
args = ["--data", "d37.csv", "--batch", "8", "--seed", "3", "--optimizer", "adam", "--lr", "0.01"]
train(2, lln, args + ["--epochs", "6"], "straight")
train(2, lln, args + ["--epochs", "3"], "part")
shutil.copy("part.ckpt.safetensors", "mixed.ckpt.safetensors")
run(MPI + ["-np", "2", LLNC, "train", lln] + args + [
    "--epochs", "6", "--threads", "1", "-o", "part.safetensors", "--log", "part.log",
    "--resume", "part.ckpt.safetensors"])
check(weights("straight.safetensors") == weights("part.safetensors") and
      [e["train_loss"] for e in log("straight.log")] == [e["train_loss"] for e in log("part.log")],
      "K=2: 3 epochs, then resumed under mpirun to 6, equals 6 epochs bit for bit")
train(1, lln, args + ["--epochs", "6", "--resume", "mixed.ckpt.safetensors", "--checkpoint", "mixed.ckpt"],
      "mixed")
d = max_rel_weights("straight.safetensors", "mixed.safetensors")
check(d <= 1e-5, "a 2-rank checkpoint resumed by one process: weights within 1e-5 (%.2g)" % d)

# --- a rank that fails stops them all ---
data("bad.csv", 31, 1, bad_record=7)
for out in ("fail.safetensors",):
    if os.path.exists(out):
        os.remove(out)
common = ["--batch", "31", "--epochs", "50", "-o", "fail.safetensors"]
try:
    p = run(MPI + ["-np", "1", LLNC, "train", "vanilla.lln", "--data", "d31.csv"] + common +
            [":", "-np", "1", LLNC, "train", "vanilla.lln", "--data", "bad.csv"] + common, ok=False, timeout=60)
    check(p.returncode != 0 and "bad.csv: record 7:" in p.stderr and not os.path.exists("fail.safetensors"),
          "bad data on rank 1 alone: every rank stops with its error (exit %d)" % p.returncode)
except subprocess.TimeoutExpired:
    check(False, "bad data on rank 1 alone: the job hung")
try:
    p = run(MPI + ["-np", "1", LLNC, "train", "vanilla.lln", "--data", "d31.csv"] + common +
            [":", "-np", "1", LLNC, "train", "vanilla.lln", "--data", "d31.csv", "--seed", "9"] + common,
            ok=False, timeout=60)
    check(p.returncode != 0 and "disagree" in p.stderr and not os.path.exists("fail.safetensors"),
          "ranks with different settings refuse to train (exit %d)" % p.returncode)
except subprocess.TimeoutExpired:
    check(False, "ranks with different settings: the job hung")
p = run(MPI + ["-np", "2", "./certifier"] + CERT, ok=False, timeout=60)
check(p.returncode != 0 and "--shard I/N" in p.stderr and "llnc certify" in p.stderr,
      "a standalone certifier under mpirun -np 2 refuses, pointing at --shard and llnc certify")
try:
    p = run(MPI + ["-np", "2"] + CC + ["--eps", "0.1", "--norm", "2", "bad.csv"], ok=False, timeout=60)
    check(p.returncode != 0 and "bad.csv: record 7:" in p.stderr,
          "llnc certify under mpirun on bad data: stops with the error (exit %d)" % p.returncode)
except subprocess.TimeoutExpired:
    check(False, "llnc certify under mpirun on bad data: the job hung")

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all MPI checks passed")
