"""What the PyTorch sides of bench/run share: arguments, files, the radii, and
the measurement modes, for any network object.

bench/torch_template.py (the paper's template algorithm) and
bench/torch_best.py (the formulations a skilled PyTorch user would write)
each define their networks and call main() here with a factory.  A network
object has: params (tensors with requires_grad, in the safetensors file's
order), names (their names), vanilla_loss(x, y), roll_loss(x, y, axes)
-> (loss, cross-entropy), where axes is None (exact ROLL, or a fresh random
draw of the model's K axes per example) or a (B, K) int64 tensor of the
axes to use, and certify(x, norms) -> {"label", "eps_<p>", "pred_eps_<p>"}.

Importing this module sets OMP_NUM_THREADS from the command line's
--threads before it imports torch, so that torch's OpenMP pool starts with
the measured thread count.

Modes (one per process, so ru_maxrss is that measurement's peak):
  check    --weights W --x X --y Y --lln-json F --lln-grad G
           the losses, the ROLL gradient and the radii in float64 (and in
           float32), compared with lln's; exit 1 when a gate fails
  vanilla | roll | cert_all | cert_l2   --threads T --reps R --steps S --n N
  sgemm    single-thread torch.mm GFLOP/s on large square float32 matrices
Every mode prints one JSON object on stdout.  --lambda, --C: the ROLL
objective (the model's: mnist_fc 2 and 0.25, mnist_cnn 1 and 1); --opt:
sgd (lr 0.01, Nesterov momentum 0.5, mnist_fc's) or adam (lr 0.001,
mnist_cnn's).
"""
import argparse
import json
import os
import resource
import struct
import sys
import time

MODES = ["check", "vanilla", "roll", "cert_all", "cert_l2", "sgemm"]


def parse_args(extra_modes=()):
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=list(extra_modes) + MODES)
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
    ap.add_argument("--tol", type=float, default=1e-4, help="gate on the losses")
    ap.add_argument("--eps-tol", type=float, default=1e-3,
                    help="gate on the radii: lln's are sound lower bounds, smaller by up to ez/|z| "
                         "of the binding neuron (docs/reliability.md)")
    ap.add_argument("--lln-log")
    ap.add_argument("--lln-weights")
    ap.add_argument("--loss-tol", type=float, default=1e-3)
    ap.add_argument("--weight-tol", type=float, default=1e-3)
    ap.add_argument("--lambda", dest="lam", type=float, default=2.0)
    ap.add_argument("--C", type=float, default=0.25)
    ap.add_argument("--opt", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--variant", default=None, help="torch_best.py: which formulation (default the fastest)")
    return ap.parse_args()


def _threads_env():
    """The measured thread count into OMP_NUM_THREADS before torch is
    imported, so that its OpenMP pool starts with that many threads."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("mode", nargs="?")
    ap.add_argument("--threads", type=int, default=1)
    a, _ = ap.parse_known_args()
    os.environ["OMP_NUM_THREADS"] = str(1 if a.mode == "sgemm" else a.threads)


def _openblas_core():
    """OpenBLAS 0.3.21 picks its kernels by the CPU's model number and falls
    back to Prescott (SSE3) on models it does not know: on the 2026-12-02
    machine (a Sapphire Rapids VM that reports "Intel(R) Xeon(R) Processor")
    that ran sgemm at 30 GFLOP/s instead of 137.  Name the core from the
    CPU's own feature flags instead, unless the caller already did, so that
    the competitor gets OpenBLAS's best kernels (docs/performance.md)."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    for need, core in (("avx512_bf16", "Cooperlake"), ("avx512f", "SkylakeX"), ("avx2", "Haswell")):
        if need in flags:
            os.environ["OPENBLAS_CORETYPE"] = core
            return


_threads_env()
_openblas_core()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# normalize(0.1307, 0.3081) as lln keeps it: the decimals, correctly rounded
# to double (docs/reliability.md); a float32 tensor rounds them again
MEAN, STD = 0.1307, 0.3081


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
    core = os.environ.get("OPENBLAS_CORETYPE")
    return sorted(libs) + ([f"OPENBLAS_CORETYPE={core}"] if core else [])


def emit(obj):
    obj.setdefault("side", "torch")
    obj.setdefault("torch", torch.__version__)
    obj.setdefault("maxrss_mb", round(maxrss_mb(), 1))
    print(json.dumps(obj), flush=True)


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


def params_from(tensors, dtype):
    """(names, {name: leaf tensor}) in file order."""
    names = list(tensors)
    return names, {n: torch.tensor(tensors[n], dtype=dtype, requires_grad=True) for n in names}


def is_cnn(tensors):
    return any(v.ndim == 4 for v in tensors.values())


def load_data(args, dtype):
    x = torch.from_numpy(np.load(args.x).astype(np.float32)).to(dtype)
    y = torch.from_numpy(np.load(args.y).astype(np.int64))
    return x.view(x.shape[0], -1), y


def optimizer(args, params):
    if args.opt == "adam":
        return torch.optim.Adam(params, lr=0.001)
    return torch.optim.SGD(params, lr=0.01, momentum=0.5, nesterov=True)


def roll_reg(sq, za, C):
    """Per example: mean over the hidden neurons of ||g||^2 + C max(0, 1 - |z|)
    (gamma = 100)."""
    return (sq + C * torch.relu(1 - za)).mean(dim=1)


def radii(out, za, logits, q, qp, p):
    """eps_p and the prediction radius of a batch (raw input units, inf where
    no neuron binds), into out: za (B, H) |z|; q (B, H) the dual norms of the
    neurons' gradient rows; qp (B, n_out) those of g_y - g_k."""
    B = za.shape[0]
    y = out["label"]
    inf = torch.tensor(float("inf"), dtype=za.dtype)
    gap = (logits.gather(1, y.view(B, 1)) - logits) * STD
    eps = torch.where(q > 0, za * STD / q, inf).amin(dim=1)
    r = torch.where(qp > 0, gap / qp, inf)
    r[torch.arange(B), y] = inf
    out["eps_" + p] = eps
    out["pred_eps_" + p] = torch.minimum(eps, r.amin(dim=1))


def row_radii(out, za, logits, rows, J, norms):
    """radii() from explicit rows: rows a list of (B, D, H_i) blocks of the
    hidden neurons' gradients (D the input axis), J (B, D, n_out) the
    logits'."""
    B, D = J.shape[0], J.shape[1]
    y = out["label"]
    dJ = J.gather(2, y.view(B, 1, 1).expand(B, D, 1)) - J
    for p in norms:
        if p == "l1":      # dual: linf
            q = torch.cat([g.abs().amax(dim=1) for g in rows], dim=1)
            qp = dJ.abs().amax(dim=1)
        elif p == "l2":
            q = torch.cat([(g * g).sum(dim=1) for g in rows], dim=1).sqrt()
            qp = (dJ * dJ).sum(dim=1).sqrt()
        else:              # linf: dual l1
            q = torch.cat([g.abs().sum(dim=1) for g in rows], dim=1)
            qp = dJ.abs().sum(dim=1)
        radii(out, za, logits, q, qp, p)


class Cnn:
    """examples/mnist_cnn.lln in PyTorch: the forward pass, and the masked
    network that both sides push copies or tangents through.

    28x28 -> c1 conv 3x3 stride 2 (8 x 14 x 14) -> r1a, r1b 3x3 convs with
    the skip r1 = relu(r1b + c1) -> 2x2 average pooling p1 (8 x 7 x 7) ->
    r2a, r2b with r2 = relu(r2b + p1) -> out, dense 10.  The hidden neurons,
    in lln's order: c1, r1a, r1, r2a, r2 (5,488), each flattened C, H, W."""
    D, SAMPLES = 784, 16

    def __init__(self, tensors, dtype, args):
        self.names, self.p = params_from(tensors, dtype)
        self.params = [self.p[n] for n in self.names]
        self.dtype, self.lam, self.C = dtype, args.lam, args.C

    def conv(self, h, n, bias, stride=1):
        return F.conv2d(h, self.p[n + ".weight"], self.p[n + ".bias"] if bias else None, stride=stride,
                        padding=1)

    def dense(self, h, bias):
        return F.linear(h.flatten(1), self.p["out.weight"], self.p["out.bias"] if bias else None)

    def forward(self, x):
        """logits, the hidden pre-activations (B, C, H, W) and the masks (as
        0/1 of the dtype: constants, no gradient)."""
        h = ((x - MEAN) / STD).view(-1, 1, 28, 28)
        zs, ms = [], []

        def act(z):
            m = (z > 0).to(self.dtype)
            zs.append(z)
            ms.append(m)
            return z * m
        a1 = act(self.conv(h, "c1", True, 2))
        a2 = act(self.conv(a1, "r1a", True))
        a3 = act(self.conv(a2, "r1b", True) + a1)
        p1 = F.avg_pool2d(a3, 2)
        a4 = act(self.conv(p1, "r2a", True))
        a5 = act(self.conv(a4, "r2b", True) + p1)
        return self.dense(a5, True), zs, ms

    def masked(self, h, masks, R, bias, t1=None):
        """R inputs per example (h: (B R, 1, 28, 28), the examples' blocks
        in turn) through the network with every ReLU replaced by the
        example's mask.  t1: c1's output when it is the same for every
        example, (R, 8, 14, 14) (the tangents of the unit vectors).  Returns
        the hidden layers' outputs, each (B, R, H_i), and the logits'
        (B, R, 10)."""
        B = masks[0].shape[0]

        def mask(t, m):
            if t.shape[0] == B * R:
                return (t.reshape(B, R, *t.shape[1:]) * m.unsqueeze(1)).reshape(t.shape)
            return (t.unsqueeze(0) * m.unsqueeze(1)).reshape(B * R, *t.shape[1:])
        if t1 is None:
            t1 = self.conv(h, "c1", bias, 2)
        a1 = mask(t1, masks[0])
        t2 = self.conv(a1, "r1a", bias)
        a2 = mask(t2, masks[1])
        t3 = self.conv(a2, "r1b", bias) + a1
        a3 = mask(t3, masks[2])
        p1 = F.avg_pool2d(a3, 2)
        t4 = self.conv(p1, "r2a", bias)
        a4 = mask(t4, masks[3])
        t5 = self.conv(a4, "r2b", bias) + p1
        a5 = mask(t5, masks[4])
        f = self.dense(a5, bias).reshape(B, R, -1)
        first = t1.reshape(-1, R, t1[0].numel())
        return [first.expand(B, R, -1)] + [t.reshape(B, R, -1) for t in (t2, t3, t4, t5)], f

    def vanilla_loss(self, x, y):
        return F.cross_entropy(self.forward(x)[0], y)

    def draw_axes(self, B):
        """K of the D input axes per example, uniformly without replacement."""
        return torch.rand(B, self.D).argsort(dim=1)[:, :self.SAMPLES]

    def roll_from_sq(self, logits, zs, sq, y):
        B = logits.shape[0]
        za = torch.cat([z.reshape(B, -1) for z in zs], dim=1).abs()
        ce = F.cross_entropy(logits, y)
        return ce + self.lam * roll_reg(sq, za, self.C).mean(), ce


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


def lln_list(v):
    return np.array([x if x is not None else np.inf for x in v])


def mode_check(args, make_net):
    """lln against this network, float64 (gated) and float32 (reported)."""
    with open(args.lln_json) as f:
        lln = json.loads(f.read())
    B, n = lln["batch"], lln["n"]
    res = {"mode": "check", "batch": B, "n": n, "tol": args.tol, "eps_tol": args.eps_tol}
    tensors = read_safetensors(args.weights)
    axes = torch.tensor(lln["axes"], dtype=torch.int64) if lln.get("samples") else None
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        net = make_net(tensors, dtype, args)
        x, y = load_data(args, dtype)
        xb, yb = x[:B], y[:B]
        lv = net.vanilla_loss(xb, yb).item()
        lr_, ce = net.roll_loss(xb, yb, axes)
        lr_.backward()
        grad = np.concatenate([p.grad.detach().to(torch.float64).numpy().ravel() for p in net.params])
        c = net.certify(x[:n], ["l1", "l2", "linf"])
        c2 = net.certify(x[:n], ["l2"])
        r = {
            "loss_vanilla": lv, "loss_roll": lr_.item(), "ce_roll": ce.item(),
            "rel_loss_vanilla": abs(lv - lln["loss_vanilla"]) / abs(lln["loss_vanilla"]),
            "rel_loss_roll": abs(lr_.item() - lln["loss_roll"]) / abs(lln["loss_roll"]),
            "label_mismatches": int((c["label"].numpy() != np.array(lln["label"])).sum()),
        }
        for p in ("l1", "l2", "linf"):
            r["rel_eps_" + p] = rel_err(lln_list(lln["eps_" + p]), c["eps_" + p].numpy())
            r["rel_pred_eps_" + p] = rel_err(lln_list(lln["pred_eps_" + p]), c["pred_eps_" + p].numpy())
        # lln's l2-only path against this side's l2-only path
        r["rel_eps_l2_gram"] = rel_err(lln_list(lln["eps_l2_gram"]), c2["eps_l2"].numpy())
        r["rel_pred_eps_l2_gram"] = rel_err(lln_list(lln["pred_eps_l2_gram"]), c2["pred_eps_l2"].numpy())
        g = read_safetensors(args.lln_grad)
        lg = np.concatenate([g[k].astype(np.float64).ravel() for k in net.names])
        r["rel_grad_roll_l2"] = float(np.linalg.norm(lg - grad) / np.linalg.norm(grad))
        r["eps_l2_median"] = float(np.median(c["eps_l2"].numpy()))
        res[tag] = r
    # the gate: float64 (the algorithm, free of float32 cancellation) against lln
    r = res["f64"]
    gated = ["rel_loss_vanilla", "rel_loss_roll"]
    gated_eps = ["rel_eps_l1", "rel_eps_l2", "rel_eps_linf", "rel_pred_eps_l1", "rel_pred_eps_l2",
                 "rel_pred_eps_linf", "rel_eps_l2_gram", "rel_pred_eps_l2_gram"]
    ok = all(r[k] <= args.tol for k in gated) and all(r[k] <= args.eps_tol for k in gated_eps)
    if r["label_mismatches"] or not r["rel_grad_roll_l2"] <= 1e-3:
        ok = False
    res["gated"] = gated + gated_eps + ["label_mismatches == 0", "rel_grad_roll_l2 <= 1e-3"]
    res["axes"] = "lln's draw" if axes is not None else "exact"
    res["ok"] = ok
    emit(res)
    return 0 if ok else 1


def timed(fn, reps, count):
    rates, secs = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        secs.append(dt)
        rates.append(count / dt)
    return rates, secs


def mode_train(args, make_net, roll):
    torch.set_num_threads(args.threads)
    net = make_net(read_safetensors(args.weights), torch.float32, args)
    x, y = load_data(args, torch.float32)
    B = args.batch
    nbat = x.shape[0] // B
    opt = optimizer(args, net.params)
    state = {"step": 0, "loss": 0.0}

    def step():
        i = state["step"] % nbat
        xb, yb = x[i * B:(i + 1) * B], y[i * B:(i + 1) * B]
        opt.zero_grad()
        loss = net.roll_loss(xb, yb, None)[0] if roll else net.vanilla_loss(xb, yb)
        loss.backward()
        opt.step()
        state["step"] += 1
        state["loss"] = loss.item()

    step()  # warm-up
    rss_before = rss_mb()

    def run():
        for _ in range(args.steps):
            step()
    rates, secs = timed(run, args.reps, args.steps)
    emit({"mode": "roll" if roll else "vanilla", "threads": torch.get_num_threads(), "batch": B,
          "steps": args.steps, "unit": "steps/s", "rate": rates, "secs": secs,
          "last_loss": state["loss"], "rss_before_mb": round(rss_before, 1), "blas": blas_libs(),
          "variant": getattr(net, "variant", None)})


def mode_cert(args, make_net, norms):
    torch.set_num_threads(args.threads)
    net = make_net(read_safetensors(args.weights), torch.float32, args)
    x, _ = load_data(args, torch.float32)
    n = min(args.n, x.shape[0])
    B = args.batch

    def run():
        for i in range(0, n, B):
            net.certify(x[i:min(n, i + B)], norms)
    net.certify(x[:min(n, B)], norms)  # warm-up
    rss_before = rss_mb()
    rates, secs = timed(run, args.reps, n)
    emit({"mode": "cert_all" if len(norms) == 3 else "cert_l2", "threads": torch.get_num_threads(),
          "n": n, "unit": "examples/s", "rate": rates, "secs": secs,
          "rss_before_mb": round(rss_before, 1), "blas": blas_libs(), "variant": getattr(net, "variant", None)})


def mode_sgemm(args):
    torch.set_num_threads(1)
    s = args.size
    g = torch.Generator().manual_seed(0)
    a = torch.randn(s, s, generator=g)
    b = torch.randn(s, s, generator=g)
    c = torch.empty(s, s)
    torch.mm(a, b, out=c)
    rates, secs = timed(lambda: torch.mm(a, b, out=c), args.reps, 2.0 * s ** 3 / 1e9)
    emit({"mode": "sgemm", "threads": 1, "size": s, "unit": "GFLOP/s", "rate": rates, "secs": secs,
          "blas": blas_libs(), "num_threads_after": torch.get_num_threads()})


def main(args, make_net, extra=None):
    """Run args.mode; extra: {mode: function()} for a script's own modes."""
    torch.manual_seed(0)
    m = args.mode
    if extra and m in extra:
        return extra[m]()
    if m == "check":
        return mode_check(args, make_net)
    if m in ("vanilla", "roll"):
        return mode_train(args, make_net, m == "roll")
    if m == "cert_all":
        return mode_cert(args, make_net, ["l1", "l2", "linf"])
    if m == "cert_l2":
        return mode_cert(args, make_net, ["l2"])
    if m == "sgemm":
        return mode_sgemm(args)
    sys.exit(f"unknown mode {m}")
