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
    (||g||_2^2 + C max(0, 1 - |z|)), mean over the batch (--lambda, --C;
    mnist_fc's 2 and 0.25); backward through all of it (autograd), then the
    optimizer's step (mnist_fc: SGD, lr 0.01, Nesterov momentum 0.5).
  * Certification: eps_p = min over hidden neurons with g != 0 of
    |z| std / ||g||_q (q the dual of p; std converts to raw input units), and
    the prediction radius min(eps_p, min_k (f_y - f_k) std / ||g_y - g_k||_q)
    from the logit rows, which the template pushes through the last layer too.
    All three norms, or l2 only (same template, one norm).
  * Vanilla training: plain forward, cross-entropy, backward, SGD step.

The CNN of examples/mnist_cnn.lln (CnnTemplate) gets the same algorithm:
D + 1 copies of the example (the zero input and the unit vectors) through
the masked network for certification, K + 1 copies (the zero input and
the K sampled unit vectors, the differences scaled by sqrt(D/K)) for
approximate ROLL.  Certification runs a few examples at a time (D + 1
copies of a 28 x 28 image through 8-channel convs are 5 MB per example and
layer).

Modes: those of bench/torch_common.py (check, vanilla, roll, cert_all,
cert_l2, sgemm), for the model whose weights --weights holds, and
  prepare  --out DIR [--n N]   data: x.npy (float32, raw pixels in [0,1]) and
           y.npy (int32) from data/train-*-idx*-ubyte, or seeded random images
  trajectory --weights W0 --x X --y Y --steps S --lln-log L --lln-weights W
           S ROLL steps of SGD from W0 on the batches X[64k : 64k+64] in order,
           in float64 and in float32, compared with lln's run of the same steps
           (per-step loss from the JSON lines L, final weights W):
           bench/equivalence (mnist_fc)
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import (MEAN, STD, Cnn, emit, is_cnn, load_data, main, optimizer, params_from,  # noqa: E402
                          parse_args, read_safetensors, roll_reg, row_radii)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ARGS = parse_args(["prepare", "trajectory"])


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

    def __init__(self, tensors, dtype, args):
        self.names, p = params_from(tensors, dtype)
        self.params = [p[n] for n in self.names]
        self.layers = [(n[:-len(".weight")], p[n], p[n[:-len(".weight")] + ".bias"])
                       for n in self.names if n.endswith(".weight")]
        self.lam, self.C = args.lam, args.C
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

    def roll_loss(self, x, y, axes=None):
        B = x.shape[0]
        logits, zs, masks = self.forward(x)
        rows = self.gradients(masks, B, with_logits=False)
        sq = torch.cat([(g * g).sum(dim=1) for g in rows], dim=1)       # (B, H)
        za = torch.cat(zs, dim=1).abs()
        ce = F.cross_entropy(logits, y)
        return ce + self.lam * roll_reg(sq, za, self.C).mean(), ce

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
        out = {"label": logits.argmax(dim=1)}
        row_radii(out, za, logits, rows[:-1], rows[-1], norms)
        return out


class CnnTemplate(Cnn):
    """The template algorithm for examples/mnist_cnn.lln."""
    CHUNK = 4   # examples per certification pass: 4 x 785 copies

    def copies(self, B, axes):
        """The zero input and the unit vectors of axes (B, R), as B (R + 1)
        normalised 28 x 28 images."""
        R = axes.shape[1]
        h = torch.zeros(B, R + 1, self.D, dtype=self.dtype)
        h[:, 1:, :].scatter_(2, axes.unsqueeze(2), 1.0)
        return h.view(B * (R + 1), 1, 28, 28)

    def roll_loss(self, x, y, axes=None):
        B = x.shape[0]
        logits, zs, ms = self.forward(x)
        if axes is None:
            axes = self.draw_axes(B)
        K = axes.shape[1]
        rows, _ = self.masked(self.copies(B, axes), ms, K + 1, True)
        sq = torch.cat([((t[:, 1:] - t[:, :1]) ** 2).sum(dim=1) for t in rows], dim=1) * (self.D / K)
        return self.roll_from_sq(logits, zs, sq, y)

    @torch.no_grad()
    def certify(self, x, norms):
        outs = []
        every = torch.arange(self.D).expand(self.CHUNK, self.D)
        for i in range(0, x.shape[0], self.CHUNK):
            xb = x[i:i + self.CHUNK]
            B = xb.shape[0]
            logits, zs, ms = self.forward(xb)
            rows, f = self.masked(self.copies(B, every[:B]), ms, self.D + 1, True)
            rows = [t[:, 1:] - t[:, :1] for t in rows]
            za = torch.cat([z.reshape(B, -1) for z in zs], dim=1).abs()
            out = {"label": logits.argmax(dim=1)}
            row_radii(out, za, logits, rows, f[:, 1:] - f[:, :1], norms)
            outs.append(out)
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def make_net(tensors, dtype, args):
    return CnnTemplate(tensors, dtype, args) if is_cnn(tensors) else Net(tensors, dtype, args)


def load_net(dtype):
    return make_net(read_safetensors(ARGS.weights), dtype, ARGS)


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
        x, y = load_data(ARGS, dtype)
        if x.shape[0] < S * B:
            raise SystemExit(f"{ARGS.x}: {x.shape[0]} examples, {S} steps of {B} need {S * B}")
        opt = optimizer(ARGS, net.params)
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


if __name__ == "__main__":
    sys.exit(main(ARGS, make_net, {"prepare": mode_prepare, "trajectory": mode_trajectory}) or 0)
