#!/usr/bin/python3
"""The best PyTorch formulations of lln's workloads, for bench/run.

Where bench/torch_template.py runs the paper's template algorithm (D + 1
copies of every example through the masked network), this file does what a
skilled PyTorch user would write from PAPER.md, for the two example models.
Each workload has two or more formulations (--variant); the first listed is
the default, the fastest in the measurements of docs/performance.md
("The competitors"), and bench/run --variants times them all.

examples/mnist_fc.lln (FcBest, dense layers W^1 .. W^5, masks m^i):
  * vanilla: nn.Linear / nn.ReLU layers, F.cross_entropy, backward, SGD.
    Variants: "module" (nn.Sequential), "functional" (F.linear, relu).
  * ROLL and eps_2 through the Gram recurrence: G^1 = W^1 W^1^T (shared by
    the batch), G^i = A G^{i-1} A^T with A = W^i diag(m^{i-1}) per example,
    sq^i = diag(G^i); the logits' G gives ||g_y - g_k||^2 = G_yy + G_kk -
    2 G_yk.  Training differentiates through it with autograd; the last
    hidden layer needs only the diagonal, rowsum((A G) * A).  Variants:
    "wide" (mask G on both sides, then two plain GEMMs over the whole batch,
    W^i X as one (B n) x n times n x n product), "bmm" (torch.bmm with the
    per-example masked weights A); for ROLL also "rows" (sq from the
    explicit rows below, ||g||^2 summed over D).
  * eps_1, eps_2, eps_inf with explicit gradient rows: J^1 = W^1 (the same
    for every example), J^i = W^i diag(m^{i-1}) J^{i-1}, logits' rows
    likewise.  Variants: "wide" (rows kept neuron-major, (n_i, B D), so each
    layer is one GEMM W^i (m * J^{i-1}) over the whole batch), "bmm"
    (torch.bmm of the masked weights (B, n_i, n_{i-1}) with (B, n_{i-1}, D)).
examples/mnist_cnn.lln (CnnBest):
  * vanilla: the forward pass (F.conv2d etc.), cross-entropy, Adam.
  * approximate ROLL: the K sampled axes as tangents, a (B K, 1, 28, 28)
    batch of scaled unit vectors, pushed through the convs without biases
    with the example's frozen masks (forward-mode by hand, one F.conv2d per
    layer on B K images); sq = sum over the K tangents squared, autograd
    for the rest.  Variants: "tangent" (the tangents in their own conv
    calls), "fused" (the example and its K tangents in one conv call per
    layer, the bias added to the example only).
  * certification: the D = 784 unit tangents; their first conv is the same
    for every example and computed once; then CHUNK examples at a time as
    a (CHUNK D, 8, 14, 14) batch.  eps_2 alone needs the same rows (conv
    layers have no cheap Gram).  Variants: "chunk2", "chunk1", "chunk8"
    (examples per pass), "cl2" (channels_last memory format, 2 examples).

Modes: those of bench/torch_common.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import (MEAN, STD, Cnn, is_cnn, main, parse_args, params_from, radii, roll_reg,  # noqa: E402
                          row_radii)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

VARIANTS = {  # (model, mode): formulations, the default first
    ("fc", "vanilla"): ["module", "functional"],
    ("fc", "roll"): ["wide", "bmm", "rows"],
    ("fc", "cert_l2"): ["bmm", "wide"],
    ("fc", "cert_all"): ["bmm", "wide"],
    ("cnn", "vanilla"): ["module"],
    ("cnn", "roll"): ["tangent", "fused"],
    ("cnn", "cert_l2"): ["chunk2", "chunk1", "chunk8", "cl2"],
    ("cnn", "cert_all"): ["chunk2", "chunk1", "chunk8", "cl2"],
}


class FcBest:
    """The dense chain of mnist_fc.lln."""

    def __init__(self, tensors, dtype, args):
        self.names, p = params_from(tensors, dtype)
        self.params = [p[n] for n in self.names]
        ws = [n for n in self.names if n.endswith(".weight")]
        self.W = [p[n] for n in ws]
        self.b = [p[n[:-len(".weight")] + ".bias"] for n in ws]
        self.lam, self.C = args.lam, args.C
        self.dtype = dtype
        mode = args.mode if args.mode in ("vanilla", "roll", "cert_l2", "cert_all") else None
        self.variant = args.variant or (VARIANTS[("fc", mode)][0] if mode else "wide")
        self.module = None
        if self.variant == "module":
            layers = []
            for i, (W, b) in enumerate(zip(self.W, self.b)):
                lin = torch.nn.Linear(W.shape[1], W.shape[0]).to(dtype)
                with torch.no_grad():
                    lin.weight.copy_(W)
                    lin.bias.copy_(b)
                layers.append(lin)
                if i < len(self.W) - 1:
                    layers.append(torch.nn.ReLU())
            self.module = torch.nn.Sequential(*layers)
            lins = [m for m in layers if isinstance(m, torch.nn.Linear)]
            self.W, self.b = [m.weight for m in lins], [m.bias for m in lins]
            self.params = [t for m in lins for t in (m.weight, m.bias)]   # the file's order

    def forward(self, x):
        """logits, hidden pre-activations, masks (0/1 of the dtype)."""
        h = (x - MEAN) / STD
        zs, ms = [], []
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = F.linear(h, W, b)
            if i == len(self.W) - 1:
                return z, zs, ms
            m = (z > 0).to(self.dtype)
            zs.append(z)
            ms.append(m)
            h = z * m

    def vanilla_loss(self, x, y):
        if self.module is not None:
            return F.cross_entropy(self.module((x - MEAN) / STD), y)
        h = (x - MEAN) / STD
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            h = F.linear(h, W, b)
            if i < len(self.W) - 1:
                h = torch.relu(h)
        return F.cross_entropy(h, y)

    def gram(self, ms, logits_gram):
        """sq (B, H) of every hidden neuron, and with logits_gram the logits'
        Gram matrices (B, n_out, n_out)."""
        B = ms[0].shape[0]
        G = self.W[0] @ self.W[0].t()                   # shared by the batch
        sqs = [torch.diagonal(G).expand(B, -1)]
        L = len(self.W)
        for i in range(1, L):
            W, m = self.W[i], ms[i - 1]
            n_out, n = W.shape
            last = i == L - 1 if logits_gram else i == L - 2
            if self.variant == "bmm":
                A = W * m.unsqueeze(1)                      # (B, n_out, n)
                AG = torch.bmm(A, G.expand(B, n, n) if G.dim() == 2 else G)
                if last and not logits_gram:
                    sqs.append((AG * A).sum(dim=2))
                    break
                G = torch.bmm(AG, A.transpose(1, 2))
            else:
                X = G * (m.unsqueeze(2) * m.unsqueeze(1))   # diag(m) G diag(m), (B, n, n)
                WX = (X.reshape(B * n, n) @ W.t()).view(B, n, n_out).transpose(1, 2)  # W X (X symmetric)
                if last and not logits_gram:
                    sqs.append((WX * W).sum(dim=2))
                    break
                G = (WX.reshape(B * n_out, n) @ W.t()).view(B, n_out, n_out)
            if i < L - 1:
                sqs.append(torch.diagonal(G, dim1=1, dim2=2))
        return torch.cat(sqs, dim=1), G

    def roll_loss(self, x, y, axes=None):
        logits, zs, ms = self.forward(x)
        if self.variant == "rows":
            sq = torch.cat([(g * g).sum(dim=1) for g in self.rows(ms, False)], dim=1)
        else:
            sq, _ = self.gram(ms, False)
        za = torch.cat(zs, dim=1).abs()
        ce = F.cross_entropy(logits, y)
        return ce + self.lam * roll_reg(sq, za, self.C).mean(), ce

    def rows(self, ms, logits=True):
        """Explicit gradient rows: a list of (B, D, n_i) per hidden layer and
        (with logits) the logits' (B, D, n_out)."""
        B = ms[0].shape[0]
        J1 = self.W[0]                                   # (n1, D), every example's
        D = J1.shape[1]
        out = [J1.t().expand(B, D, -1)]
        L = len(self.W) if logits else len(self.W) - 1
        if self.variant == "bmm":
            J = J1.expand(B, *J1.shape)
            for i in range(1, L):
                J = torch.bmm(self.W[i] * ms[i - 1].unsqueeze(1), J)   # (B, n_i, D)
                out.append(J.transpose(1, 2))
            return out
        # neuron-major (n, B, D): masking is a broadcast, each layer one GEMM
        J = (J1.unsqueeze(1) * ms[0].t().unsqueeze(2))  # (n1, B, D)
        for i in range(1, L):
            n = J.shape[0]
            Jn = (self.W[i] @ J.reshape(n, B * D)).view(-1, B, D)
            out.append(Jn.permute(1, 2, 0))
            if i < len(self.W) - 1:
                J = Jn * ms[i].t().unsqueeze(2)
        return out

    @torch.no_grad()
    def certify(self, x, norms):
        logits, zs, ms = self.forward(x)
        za = torch.cat(zs, dim=1).abs()
        out = {"label": logits.argmax(dim=1)}
        if list(norms) == ["l2"]:
            sq, Gf = self.gram(ms, True)
            B = x.shape[0]
            y = out["label"]
            d = torch.diagonal(Gf, dim1=1, dim2=2)
            gyk = Gf.gather(1, y.view(B, 1, 1).expand(B, 1, Gf.shape[2])).squeeze(1)
            qp = (d.gather(1, y.view(B, 1)) + d - 2 * gyk).clamp(min=0).sqrt()
            radii(out, za, logits, sq.sqrt(), qp, "l2")
            return out
        rows = self.rows(ms)
        row_radii(out, za, logits, rows[:-1], rows[-1], norms)
        return out


class CnnBest(Cnn):
    """mnist_cnn.lln with the tangents as an extra batch dimension."""

    def __init__(self, tensors, dtype, args):
        super().__init__(tensors, dtype, args)
        mode = args.mode if args.mode in ("vanilla", "roll", "cert_l2", "cert_all") else None
        self.variant = args.variant or (VARIANTS[("cnn", mode)][0] if mode else "tangent")
        self.t1 = None
        self.chunk = {"chunk1": 1, "chunk8": 8}.get(self.variant, 2)

    def fused_roll(self, x, y, axes):
        """The example and its K tangents in one conv call per layer."""
        B, K = x.shape[0], axes.shape[1]
        R = K + 1
        h = torch.zeros(B, R, self.D, dtype=self.dtype)
        h[:, 0] = (x - MEAN) / STD
        h[:, 1:].scatter_(2, axes.unsqueeze(2), (self.D / K) ** 0.5)
        zs, tans = [], []

        def layer(t, name, stride=1, skip=None):
            t = F.conv2d(t, self.p[name + ".weight"], None, stride=stride, padding=1)
            t = t.view(B, R, *t.shape[1:])
            t = torch.cat([t[:, :1] + self.p[name + ".bias"].view(1, 1, -1, 1, 1), t[:, 1:]], dim=1)
            return t if skip is None else t + skip

        def act(t):
            z = t[:, 0]
            m = (z > 0).to(self.dtype).detach()
            zs.append(z)
            tans.append(t[:, 1:].reshape(B, K, -1))
            return t * m.unsqueeze(1)

        def flat(t):
            return t.reshape(B * R, *t.shape[2:])
        a1 = act(layer(h.view(B * R, 1, 28, 28), "c1", 2))
        a2 = act(layer(flat(a1), "r1a"))
        a3 = act(layer(flat(a2), "r1b", skip=a1))
        p1 = F.avg_pool2d(flat(a3), 2).view(B, R, 8, 7, 7)
        a4 = act(layer(flat(p1), "r2a"))
        a5 = act(layer(flat(a4), "r2b", skip=p1))
        logits = F.linear(a5[:, 0].flatten(1), self.p["out.weight"], self.p["out.bias"])
        sq = torch.cat([(t * t).sum(dim=1) for t in tans], dim=1)
        return self.roll_from_sq(logits, zs, sq, y)

    def roll_loss(self, x, y, axes=None):
        B = x.shape[0]
        if axes is None:
            axes = self.draw_axes(B)
        K = axes.shape[1]
        if self.variant == "fused":
            return self.fused_roll(x, y, axes)
        logits, zs, ms = self.forward(x)
        T = torch.zeros(B, K, self.D, dtype=self.dtype)
        T.scatter_(2, axes.unsqueeze(2), (self.D / K) ** 0.5)
        rows, _ = self.masked(T.view(B * K, 1, 28, 28), ms, K, False)
        sq = torch.cat([(t * t).sum(dim=1) for t in rows], dim=1)
        return self.roll_from_sq(logits, zs, sq, y)

    @torch.no_grad()
    def certify(self, x, norms):
        if self.t1 is None:   # the unit tangents' first conv: the same for every example
            eye = torch.eye(self.D, dtype=self.dtype).view(self.D, 1, 28, 28)
            self.t1 = self.conv(eye, "c1", False, 2)
            if self.variant == "cl2":
                self.t1 = self.t1.contiguous(memory_format=torch.channels_last)
        outs = []
        for i in range(0, x.shape[0], self.chunk):
            xb = x[i:i + self.chunk]
            logits, zs, ms = self.forward(xb)
            B = xb.shape[0]
            rows, f = self.masked(None, ms, self.D, False, t1=self.t1)
            za = torch.cat([z.reshape(B, -1) for z in zs], dim=1).abs()
            out = {"label": logits.argmax(dim=1)}
            row_radii(out, za, logits, rows, f, norms)
            outs.append(out)
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def make_net(tensors, dtype, args):
    return CnnBest(tensors, dtype, args) if is_cnn(tensors) else FcBest(tensors, dtype, args)


if __name__ == "__main__":
    sys.exit(main(parse_args(), make_net) or 0)
