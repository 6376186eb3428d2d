"""lib_check.py: the Python module lln against the certifier, for test_lib.

    lib_check.py MODEL.lln WEIGHTS.safetensors CERTIFIER TMPDIR LLNC

Certifies a numpy batch through lln (the module of the build tree, found on
PYTHONPATH) and the same float32 batch, saved as .npy, through the
certifier built from MODEL and WEIGHTS: predictions, binding neurons and
patterns must be equal, and every radius the certifier prints must be
lln's float rounded toward zero to 9 digits (so within 1e-8 below it).
With labels and radii, correct / certified must match the certifier's
records.  Then: the weights set through load_state_dict from numpy arrays
give the same numbers; evaluate agrees with the certified predictions;
train from numpy arrays gives the weights of `llnc train` on the same data;
a bad source raises lln.Error with its diagnostic.  Exit 1 on a failure.
"""
import json
import os
import subprocess
import sys

import numpy as np

import lln

lln_path, weights, certifier, tmp, llnc = sys.argv[1:6]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


m = lln.compile(lln_path)
m.load_weights(weights)
rng = np.random.default_rng(5)
x = rng.uniform(-0.5, 1.5, size=(64, m.n_inputs)).astype(np.float32)
y = np.arange(64) % m.n_outputs
radius = 0.01
c = m.certify(x, labels=y, eps=[0, radius], norm="inf")

xp = os.path.join(tmp, "py-x.npy")
yp = os.path.join(tmp, "py-y.npy")
np.save(xp, x)
np.save(yp, y.astype(np.int64))
out = subprocess.run([certifier, "--labels", yp, "--eps", "0,%g" % radius, "--norm", "inf", xp],
                     check=True, capture_output=True, text=True).stdout
recs = [json.loads(line) for line in out.splitlines()]
check(len(recs) == len(x), "record count %d" % len(recs))
for i, rec in enumerate(recs):
    check(rec["pred"] == c["pred"][i], "input %d: pred %d, lln %d" % (i, rec["pred"], c["pred"][i]))
    check(rec["label"] == y[i] and rec["correct"] == bool(c["correct"][i]), "input %d: correct" % i)
    check(rec["certified"] == {"0": bool(c["certified"][i, 0]), "%g" % radius: bool(c["certified"][i, 1])},
          "input %d: certified %s, lln %s" % (i, rec["certified"], c["certified"][i]))
    check(rec["pattern"] == "%016x" % c["pattern"][i], "input %d: pattern" % i)
    for p in lln.NORMS:
        for key in ("eps_" + p, "eps_pred_" + p):
            v = float(c[key][i])
            r = rec[key]
            if r is None:
                check(np.isinf(v), "input %d: %s null, lln %r" % (i, key, v))
                continue
            check(r <= v and v - r <= 1e-8 * v, "input %d: %s %r, lln %r" % (i, key, r, v))
        b = rec["bind_" + p]
        want = m.binding(int(c["bind_" + p][i]))
        check(b is not None and (b["layer"], b["index"]) == want, "input %d: bind_%s %s, lln %s" % (i, p, b, want))
n_certified = int(c["certified"][:, 1].sum())
check(0 < n_certified < int(c["correct"].sum()), "certified at %g: %d" % (radius, n_certified))

# a state_dict of numpy arrays, as from PyTorch: the same model
sd = {}
flat = m.params
at = 0
for name, shape in m.tensors.items():
    k = int(np.prod(shape))
    sd["net." + name] = flat[at:at + k].reshape(shape).copy()
    at += k
m2 = lln.compile(lln_path)
view = m2.params   # a view of the parameters: it follows every load
seq = {k.replace("net.a.", "net.0."): v for k, v in sd.items()}   # an nn.Sequential's names
m2.load_state_dict(seq, strip_prefix="net.", rename={"0": "a"})
check(np.array_equal(m2.params, m.params), "load_state_dict: parameters differ")
view[:] = 0
check(not m2.certify(x[:4])["pred"].any(), "params view: zero weights (all logits 0) predict other than 0")
m2.load_weights(weights)
check(np.array_equal(view, m.params), "params view: not the loaded weights")
c2 = m2.certify(x.reshape(64, -1))
check(np.array_equal(c2["eps_pred_l2"], c["eps_pred_l2"]), "load_state_dict: radii differ")
try:
    m2.load_state_dict({"net.a.weight": sd["net.a.weight"]}, strip_prefix="net.")
    check(False, "a partial state_dict was taken")
except lln.Error as e:
    check("missing" in str(e), "partial state_dict: %s" % e)

ev = m.evaluate(x, y, norms="1,2,inf")
check(abs(ev["accuracy"] - float(c["correct"].mean())) < 1e-12, "evaluate accuracy %r" % ev["accuracy"])
check(abs(ev["eps_l2"][1] - float(np.percentile(c["eps_l2"].astype(np.float64), 50))) <= 1e-6 * ev["eps_l2"][1],
      "evaluate eps_l2 P50")

# training from numpy arrays: llnc train's weights on the same data
w_py, w_cmd = os.path.join(tmp, "py-train.safetensors"), os.path.join(tmp, "cmd-train.safetensors")
m.train("--epochs", "2", "--threads", "1", "-o", w_py, x=x, y=y)
subprocess.run([llnc, "train", lln_path, "--data", xp + "," + yp, "--epochs", "2", "--threads", "1", "-o", w_cmd],
               check=True, capture_output=True)
m3 = lln.compile(lln_path)
m3.load_weights(w_cmd)
check(np.array_equal(m.params, m3.params), "train: weights differ from llnc train's")

try:
    lln.compile_text("model b {\n  input x[2];\n  h = relu(dense(y, 3));\n  output h;\n}\n", "b.lln")
    check(False, "a bad source compiled")
except lln.Error as e:
    check("b.lln:3:18: error: unknown name 'y'" in str(e), "diagnostic: %s" % e)

# a PyTorch module's state_dict as it is (torch tensors), when torch is there
try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    torch.manual_seed(0)
    seqnet = torch.nn.Sequential(torch.nn.Linear(m.n_inputs, 9), torch.nn.ReLU(), torch.nn.Linear(9, 8),
                                 torch.nn.ReLU(), torch.nn.Linear(8, m.n_outputs))
    mt = lln.compile(lln_path)
    # the model normalizes the input; compare on inputs torch sees normalized alike
    mt.load_state_dict(seqnet.state_dict(), rename={"0": "a", "2": "b", "4": "out"})
    with torch.no_grad():
        logits = seqnet((torch.tensor(x) - 0.1) / 0.7)
    ct = mt.certify(x, norms="2")
    check(np.array_equal(ct["pred"], logits.argmax(1).numpy()), "torch state_dict: predictions differ from torch's")
    print("torch: %d predictions of a torch.nn.Sequential agree" % len(x))
else:
    print("torch: not installed, state_dict of torch tensors not tried")

if failures:
    print("\n".join(failures[:20]))
    sys.exit(1)
print("lib_check: %d inputs certified from numpy as the certifier, %d certified at %g (linf); "
      "state_dict, evaluate, train agree" % (len(x), n_certified, radius))
