#!/usr/bin/python3
"""PyTorch side of lln's performance benchmark (bench/run).

The paper's "perturbation algorithm" (template algorithm), written from
docs/method.md for the model of examples/mnist_fc.lln (a chain of dense
layers, ReLU after every one but the last, input normalised inside the model):

  * Forward pass of the batch: pre-activations z^i of every hidden layer, the
    masks m^i = [z^i > 0] and the logits.
  * Template: D+1 copies per example, the zero input and the D unit vectors of
    the normalised input space (one (D+1) x D template repeated for every
    example of the batch, B (D+1) rows in all).  All copies go through the
    network again, first layer included, with the biases, and with every
    hidden layer multiplied by the example's own mask (a constant: masks carry
    no gradient).  Row k of layer i minus the zero-input copy's row is
    d z^i / d x_k, so the differences are every neuron's gradient g with
    respect to the normalised input (the network is affine once the masks are
    fixed).
  * ROLL loss (gamma = 100): CE + lambda/|I| sum over hidden neurons of
    (||g||_2^2 + C max(0, 1 - |z|)), mean over the batch, lambda = 2, C = 0.25;
    backward through all of it (autograd), then an SGD step (lr 0.01,
    Nesterov momentum 0.5, as examples/mnist_fc.lln).
  * Certification: eps_p = min over hidden neurons with g != 0 of
    |z| std / ||g||_q (q the dual of p; std converts to raw input units), and
    the prediction radius min(eps_p, min_k (f_y - f_k) std / ||g_y - g_k||_q)
    from the logit rows, which the template pushes through the last layer too.
    All three norms, or l2 only (same template, one norm).
  * Vanilla training: plain forward, cross-entropy, backward, SGD step.

Modes (one per process, so ru_maxrss is that measurement's peak):
  prepare  --out DIR [--n N]   data: x.npy (float32, raw pixels in [0,1]) and
           y.npy (int32) from data/train-*-idx*-ubyte, or seeded random images
  check    --weights W --x X --y Y --lln-json F --lln-grad G
           computes the losses, the ROLL gradient and the radii in float64
           (and float32) and compares them with lln's
  trajectory --weights W0 --x X --y Y --steps S --lln-log L --lln-weights W
           S ROLL steps of SGD from W0 on the batches X[64k : 64k+64] in order,
           in float64 and in float32, compared with lln's run of the same steps
           (per-step loss from the JSON lines L, final weights W):
           bench/equivalence
  vanilla | roll | cert_all | cert_l2   --threads T --reps R --steps S --n N
  sgemm    single-thread torch.mm GFLOP/s on large square float32 matrices
Every mode prints one JSON object on stdout.
"""
import argparse
import json
import os
import resource
import struct
import sys
import time

# normalize(0.1307, 0.3081) as lln stores it: float32 constants (so does
# torchvision's Normalize on float32 tensors); set after numpy is imported
MEAN, STD = 0.1307, 0.3081
LAMBDA, C = 2.0, 0.25
LR, MOMENTUM = 0.01, 0.5


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["prepare", "check", "trajectory", "vanilla", "roll", "cert_all",
                                     "cert_l2", "sgemm"])
    ap.add_argument("--weights")
    ap.add_argument("--x")
    ap.add_argument("--y")
    ap.add_argument("--out")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--lln-json")
    ap.add_argument("--lln-grad")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--lln-log")
    ap.add_argument("--lln-weights")
    ap.add_argument("--loss-tol", type=float, default=1e-3)
    ap.add_argument("--weight-tol", type=float, default=1e-3)
    return ap.parse_args()


ARGS = parse_args()
# thread count before torch starts its OpenMP pool
os.environ["OMP_NUM_THREADS"] = str(1 if ARGS.mode == "sgemm" else ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MEAN, STD = float(np.float32(MEAN)), float(np.float32(STD))


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    return -1.0


def blas_libs():
    """The BLAS libraries mapped into this process (which one torch runs)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "blas" in p or "lapack" in p:
                libs.add(os.path.basename(p))
    return sorted(libs)


def emit(obj):
    obj.setdefault("side", "torch")
    obj.setdefault("torch", torch.__version__)
    obj.setdefault("maxrss_mb", round(maxrss_mb(), 1))
    print(json.dumps(obj), flush=True)


# ---- files ----

def read_safetensors(path):
    """{name: float32 ndarray} in file order: 8-byte little-endian header
    length, JSON header, raw little-endian data (no safetensors package)."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name} is {info['dtype']}, not F32")
        a, b = info["data_offsets"]
        arr = np.frombuffer(blob, dtype="<f4", count=(b - a) // 4, offset=base + a)
        out.append((a, name, arr.reshape(info["shape"]).copy()))
    out.sort()
    return {name: arr for _, name, arr in out}


def write_npy(path, arr):
    np.save(path, arr)


def read_idx(path):
    with open(path, "rb") as f:
        blob = f.read()
    magic, = struct.unpack(">I", blob[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, blob[4:4 + 4 * ndim])
    return np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


# ---- the model ----

class Net:
    """The chain of dense layers of mnist_fc.lln: fc1 .. fcL, ReLU after all
    but the last, normalize(MEAN, STD) on the input."""

    def __init__(self, tensors, dtype):
        names = []
        for k in tensors:
            if k.endswith(".weight"):
                names.append(k[:-len(".weight")])
        self.params = []
        self.layers = []
        for n in names:
            W = torch.tensor(tensors[n + ".weight"], dtype=dtype, requires_grad=True)
            b = torch.tensor(tensors[n + ".bias"], dtype=dtype, requires_grad=True)
            self.layers.append((n, W, b))
            self.params += [W, b]
        self.names = [x for n in names for x in (n + ".weight", n + ".bias")]
        self.dtype = dtype
        self.D = self.layers[0][1].shape[1]
        self.template = None

    def forward(self, x):
        """Logits, hidden pre-activations z^i and masks of a raw batch."""
        h = (x - MEAN) / STD
        zs, masks = [], []
        for i, (_, W, b) in enumerate(self.layers):
            z = F.linear(h, W, b)
            if i == len(self.layers) - 1:
                return z, zs, masks
            m = z > 0
            zs.append(z)
            masks.append(m)
            h = z * m

    def template_for(self, B):
        """The D+1 copies of every example: the zero input and the unit
        vectors of the normalised input space, B (D+1) x D."""
        if self.template is None or self.template.shape[0] != B * (self.D + 1):
            t = torch.zeros(B, self.D + 1, self.D, dtype=self.dtype)
            idx = torch.arange(self.D)
            t[:, idx + 1, idx] = 1
            self.template = t.view(B * (self.D + 1), self.D)
        return self.template

    def gradients(self, masks, B, with_logits):
        """Every neuron's gradient row (normalised coordinates), by pushing the
        template through the masked network: a list of (B, D, n_i) tensors,
        one per hidden layer, then the logits' when with_logits."""
        D = self.D
        h = self.template_for(B)
        rows = []
        L = len(self.layers) if with_logits else len(self.layers) - 1
        for i in range(L):
            _, W, b = self.layers[i]
            z = F.linear(h, W, b).view(B, D + 1, -1)
            rows.append(z[:, 1:, :] - z[:, :1, :])      # subtract the zero-input copy
            if i < len(masks) and i < L - 1:
                h = (z * masks[i].view(B, 1, -1)).view(B * (D + 1), -1)
        return rows

    def roll_loss(self, x, y):
        B = x.shape[0]
        logits, zs, masks = self.forward(x)
        rows = self.gradients(masks, B, with_logits=False)
        sq = torch.cat([(g * g).sum(dim=1) for g in rows], dim=1)       # (B, H)
        za = torch.cat(zs, dim=1).abs()
        ce = F.cross_entropy(logits, y)
        reg = (sq + C * F.relu(1 - za)).mean(dim=1)
        return ce + LAMBDA * reg.mean(), ce

    def vanilla_loss(self, x, y):
        logits, _, _ = self.forward(x)
        return F.cross_entropy(logits, y)

    @torch.no_grad()
    def certify(self, x, norms):
        """eps_p and the prediction radius for p in norms ("l1", "l2", "linf"),
        raw input units; inf where no neuron binds."""
        B = x.shape[0]
        logits, zs, masks = self.forward(x)
        rows = self.gradients(masks, B, with_logits=True)
        za = torch.cat(zs, dim=1).abs()
        J = rows[-1]                                          # (B, D, n_out)
        y = logits.argmax(dim=1)
        Jy = J.gather(2, y.view(B, 1, 1).expand(B, self.D, 1))
        dJ = Jy - J                                           # (B, D, n_out)
        gap = (logits.gather(1, y.view(B, 1)) - logits) * STD  # (B, n_out)
        inf = torch.tensor(float("inf"), dtype=self.dtype)
        out = {"label": y}
        for p in norms:
            # dual norm q of p: p=1 -> linf, p=2 -> l2, p=inf -> l1
            if p == "l1":
                q = torch.cat([g.abs().amax(dim=1) for g in rows[:-1]], dim=1)
                qp = dJ.abs().amax(dim=1)
            elif p == "l2":
                q = torch.cat([(g * g).sum(dim=1) for g in rows[:-1]], dim=1).sqrt()
                qp = (dJ * dJ).sum(dim=1).sqrt()
            else:
                q = torch.cat([g.abs().sum(dim=1) for g in rows[:-1]], dim=1)
                qp = dJ.abs().sum(dim=1)
            eps = torch.where(q > 0, za * STD / q, inf).amin(dim=1)
            r = torch.where(qp > 0, gap / qp, inf)
            r[torch.arange(B), y] = inf
            out["eps_" + p] = eps
            out["pred_eps_" + p] = torch.minimum(eps, r.amin(dim=1))
        return out


def load_net(dtype):
    return Net(read_safetensors(ARGS.weights), dtype)


def load_data(dtype):
    x = torch.from_numpy(np.load(ARGS.x).astype(np.float32)).to(dtype)
    y = torch.from_numpy(np.load(ARGS.y).astype(np.int64))
    return x.view(x.shape[0], -1), y


def sgd(net):
    return torch.optim.SGD(net.params, lr=LR, momentum=MOMENTUM, nesterov=True)


# ---- modes ----

def mode_prepare():
    os.makedirs(ARGS.out, exist_ok=True)
    img = os.path.join(ARGS.data_dir, "train-images-idx3-ubyte")
    lab = os.path.join(ARGS.data_dir, "train-labels-idx1-ubyte")
    if os.path.exists(img) and os.path.exists(lab):
        x = read_idx(img)[:ARGS.n].reshape(-1, 784).astype(np.float32) / np.float32(255)
        y = read_idx(lab)[:ARGS.n].astype(np.int32)
        source = img
    else:
        rng = np.random.default_rng(1)
        x = rng.random((ARGS.n, 784), dtype=np.float32)
        y = rng.integers(0, 10, ARGS.n).astype(np.int32)
        source = "seeded random images (numpy default_rng(1))"
    write_npy(os.path.join(ARGS.out, "x.npy"), np.ascontiguousarray(x, dtype=np.float32))
    write_npy(os.path.join(ARGS.out, "y.npy"), y)
    emit({"mode": "prepare", "n": int(x.shape[0]), "source": source})


def rel_err(a, b):
    """max relative error over entries, both inf counting as equal."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    both_inf = np.isinf(a) & np.isinf(b)
    if np.any(np.isinf(a) != np.isinf(b)):
        return float("inf")
    d = np.abs(a - b) / np.maximum(np.abs(b), 1e-30)
    d[both_inf] = 0
    return float(d.max()) if d.size else 0.0


def mode_check():
    with open(ARGS.lln_json) as f:
        lln = json.loads(f.read())
    B, n = lln["batch"], lln["n"]
    res = {"mode": "check", "batch": B, "n": n, "tol": ARGS.tol}
    ok = True
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        net = load_net(dtype)
        x, y = load_data(dtype)
        xb, yb = x[:B], y[:B]
        lv = net.vanilla_loss(xb, yb).item()
        lr_, ce = net.roll_loss(xb, yb)
        lr_.backward()
        grad = np.concatenate([p.grad.detach().to(torch.float64).numpy().ravel() for p in net.params])
        c = net.certify(x[:n], ["l1", "l2", "linf"])
        r = {
            "loss_vanilla": lv, "loss_roll": lr_.item(), "ce_roll": ce.item(),
            "rel_loss_vanilla": abs(lv - lln["loss_vanilla"]) / abs(lln["loss_vanilla"]),
            "rel_loss_roll": abs(lr_.item() - lln["loss_roll"]) / abs(lln["loss_roll"]),
            "label_mismatches": int((c["label"].numpy() != np.array(lln["label"])).sum()),
        }
        for p in ("l1", "l2", "linf"):
            mine = c["eps_" + p].numpy()
            theirs = np.array([v if v is not None else np.inf for v in lln["eps_" + p]])
            r["rel_eps_" + p] = rel_err(theirs, mine)
            mine = c["pred_eps_" + p].numpy()
            theirs = np.array([v if v is not None else np.inf for v in lln["pred_eps_" + p]])
            r["rel_pred_eps_" + p] = rel_err(theirs, mine)
        theirs = np.array([v if v is not None else np.inf for v in lln["eps_l2_gram"]])
        r["rel_eps_l2_gram"] = rel_err(theirs, c["eps_l2"].numpy())
        theirs = np.array([v if v is not None else np.inf for v in lln["pred_eps_l2_gram"]])
        r["rel_pred_eps_l2_gram"] = rel_err(theirs, c["pred_eps_l2"].numpy())
        g = read_safetensors(ARGS.lln_grad)
        lg = np.concatenate([g[k].astype(np.float64).ravel() for k in net.names])
        r["rel_grad_roll_l2"] = float(np.linalg.norm(lg - grad) / np.linalg.norm(grad))
        r["eps_l2_median"] = float(np.median(c["eps_l2"].numpy()))
        res[tag] = r
    # the gate: float64 template (the algorithm, free of float32 cancellation
    # in the zero-copy subtraction and in z) against lln
    r = res["f64"]
    gated = ["rel_loss_vanilla", "rel_loss_roll", "rel_eps_l1", "rel_eps_l2", "rel_eps_linf",
             "rel_eps_l2_gram"]
    for k in gated:
        if not r[k] <= ARGS.tol:
            ok = False
    if r["label_mismatches"] or not r["rel_grad_roll_l2"] <= 1e-3:
        ok = False
    res["gated"] = gated + ["label_mismatches == 0", "rel_grad_roll_l2 <= 1e-3"]
    res["ok"] = ok
    emit(res)
    return 0 if ok else 1


def mode_trajectory():
    """The paper's training computation, step by step, against lln's.

    Per step: relative difference of the ROLL loss (at the weights before the
    step) between lln and the float64 template.  At the end: the weight
    difference relative to how far the weights moved,
        ||W_lln - W_f64|| / ||W_f64 - W_0||   (all tensors as one vector),
    next to the same number for the float32 template, which measures what
    float32 rounding alone does to this trajectory."""
    torch.set_num_threads(ARGS.threads)
    with open(ARGS.lln_log) as f:
        lln_loss = [json.loads(line)["train_loss"] for line in f if line.strip()]
    S, B = ARGS.steps, ARGS.batch
    if len(lln_loss) != S:
        raise SystemExit(f"{ARGS.lln_log}: {len(lln_loss)} steps logged, expected {S}")
    W0 = read_safetensors(ARGS.weights)
    runs = {}
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        net = load_net(dtype)
        x, y = load_data(dtype)
        if x.shape[0] < S * B:
            raise SystemExit(f"{ARGS.x}: {x.shape[0]} examples, {S} steps of {B} need {S * B}")
        opt = sgd(net)
        losses = []
        for k in range(S):
            opt.zero_grad()
            loss, _ = net.roll_loss(x[k * B:(k + 1) * B], y[k * B:(k + 1) * B])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        final = np.concatenate([p.detach().to(torch.float64).numpy().ravel() for p in net.params])
        runs[tag] = (losses, final)
    names = load_net(torch.float64).names
    w0 = np.concatenate([W0[k].astype(np.float64).ravel() for k in names])
    Wl = read_safetensors(ARGS.lln_weights)
    wl = np.concatenate([Wl[k].astype(np.float64).ravel() for k in names])
    l64, w64 = runs["f64"]
    l32, w32 = runs["f32"]
    moved = np.linalg.norm(w64 - w0)
    rel = [abs(a - b) / abs(b) for a, b in zip(lln_loss, l64)]
    rel32 = [abs(a - b) / abs(b) for a, b in zip(l32, l64)]
    res = {
        "mode": "trajectory", "steps": S, "batch": B,
        "loss_first": [lln_loss[0], l64[0]], "loss_last": [lln_loss[-1], l64[-1]],
        "max_rel_loss_lln": max(rel), "worst_step": int(np.argmax(rel)) + 1,
        "max_rel_loss_torch_f32": max(rel32),
        "moved": float(moved),
        "rel_weights_lln": float(np.linalg.norm(wl - w64) / moved),
        "rel_weights_torch_f32": float(np.linalg.norm(w32 - w64) / moved),
        "max_abs_weight_diff_lln": float(np.abs(wl - w64).max()),
        "loss_tol": ARGS.loss_tol, "weight_tol": ARGS.weight_tol,
        "per_step_rel_loss_lln": rel,
    }
    res["ok"] = res["max_rel_loss_lln"] <= ARGS.loss_tol and res["rel_weights_lln"] <= ARGS.weight_tol
    emit(res)
    return 0 if res["ok"] else 1


def timed(fn, reps, count):
    rates, secs = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        secs.append(dt)
        rates.append(count / dt)
    return rates, secs


def mode_train(roll):
    torch.set_num_threads(ARGS.threads)
    net = load_net(torch.float32)
    x, y = load_data(torch.float32)
    B = ARGS.batch
    nbat = x.shape[0] // B
    opt = sgd(net)
    state = {"step": 0, "loss": 0.0}

    def step():
        i = state["step"] % nbat
        xb, yb = x[i * B:(i + 1) * B], y[i * B:(i + 1) * B]
        opt.zero_grad()
        loss = net.roll_loss(xb, yb)[0] if roll else net.vanilla_loss(xb, yb)
        loss.backward()
        opt.step()
        state["step"] += 1
        state["loss"] = loss.item()

    step()  # warm-up
    rss_before = rss_mb()

    def run():
        for _ in range(ARGS.steps):
            step()
    rates, secs = timed(run, ARGS.reps, ARGS.steps)
    emit({"mode": "roll" if roll else "vanilla", "threads": torch.get_num_threads(), "batch": B,
          "steps": ARGS.steps, "unit": "steps/s", "rate": rates, "secs": secs,
          "last_loss": state["loss"], "rss_before_mb": round(rss_before, 1), "blas": blas_libs()})


def mode_cert(norms):
    torch.set_num_threads(ARGS.threads)
    net = load_net(torch.float32)
    x, _ = load_data(torch.float32)
    n = min(ARGS.n, x.shape[0])
    B = ARGS.batch

    def run():
        for i in range(0, n, B):
            net.certify(x[i:min(n, i + B)], norms)
    net.certify(x[:B], norms)  # warm-up
    rss_before = rss_mb()
    rates, secs = timed(run, ARGS.reps, n)
    emit({"mode": "cert_all" if len(norms) == 3 else "cert_l2", "threads": torch.get_num_threads(),
          "n": n, "unit": "examples/s", "rate": rates, "secs": secs,
          "rss_before_mb": round(rss_before, 1), "blas": blas_libs()})


def mode_sgemm():
    torch.set_num_threads(1)
    s = ARGS.size
    g = torch.Generator().manual_seed(0)
    a = torch.randn(s, s, generator=g)
    b = torch.randn(s, s, generator=g)
    c = torch.empty(s, s)
    torch.mm(a, b, out=c)
    rates, secs = timed(lambda: torch.mm(a, b, out=c), ARGS.reps, 2.0 * s ** 3 / 1e9)
    emit({"mode": "sgemm", "threads": 1, "size": s, "unit": "GFLOP/s", "rate": rates, "secs": secs,
          "blas": blas_libs()})


def main():
    torch.manual_seed(0)
    m = ARGS.mode
    if m == "prepare":
        return mode_prepare()
    if m == "check":
        return mode_check()
    if m == "trajectory":
        return mode_trajectory()
    if m in ("vanilla", "roll"):
        return mode_train(m == "roll")
    if m == "cert_all":
        return mode_cert(["l1", "l2", "linf"])
    if m == "cert_l2":
        return mode_cert(["l2"])
    if m == "sgemm":
        return mode_sgemm()


if __name__ == "__main__":
    sys.exit(main() or 0)
