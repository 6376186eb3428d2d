#!/usr/bin/python3
"""make_onnx.py: the small ONNX files that tests/test_interop.c imports.

Run from anywhere with Debian's python3-torch and python3-onnx installed:
    /usr/bin/python3 tests/data/onnx/make_onnx.py
It rewrites the .onnx files beside it.  Every model is exported by
torch.onnx.export (opset 13) from a seeded PyTorch module, each with an input
normalisation as PyTorch users write it, so the files are what a user would
bring: Sub/Div nodes, BatchNormalization, Flatten, Gemm, Conv, AveragePool,
Add.  The weights are seeded, so the files only change when this script does.
"""
import os
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


class Norm(nn.Module):
    """(x - mean) / std with mean, std scalars or broadcast tensors."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.std


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = Norm(0.5, 0.25)
        self.c1 = nn.Conv2d(1, 3, 3, padding=1)
        self.c2 = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(3 * 3 * 3, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        c1 = torch.relu(self.c1(self.norm(x)))
        r = torch.relu(self.c2(c1) + c1)
        p = self.pool(r)
        return self.out(torch.relu(self.fc(torch.flatten(p, 1))))


def models():
    torch.manual_seed(7)
    yield "dense", (1, 1, 2, 4), nn.Sequential(
        Norm(0.25, 0.5), nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(),
        nn.Linear(5, 3))
    # per-feature normalisation: folded into the first layer
    yield "dense_perfeature", (1, 6), nn.Sequential(
        Norm([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.5, 1.0, 2.0, 0.25, 1.5, 0.75]),
        nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 2))
    bn = nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.2, 0.2)
    yield "conv", (1, 1, 6, 6), nn.Sequential(
        Norm(0.1, 0.3), nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(3, 4, 3, stride=2, padding=1), bn, nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))
    yield "avgpool", (1, 2, 6, 6), nn.Sequential(
        Norm(0.2, 2.0), nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
    yield "residual", (1, 1, 6, 6), Residual()
    # per-channel normalisation before a padded convolution: refused
    yield "conv_channelnorm", (1, 2, 4, 4), nn.Sequential(
        Norm([[[0.1]], [[0.2]]], [[[0.5]], [[0.25]]]), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32, 2))
    # an operator lln does not have: refused
    yield "maxpool", (1, 1, 4, 4), nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2))


def main():
    for name, shape, m in models():
        m.eval()
        x = torch.rand(*shape)
        path = os.path.join(HERE, name + ".onnx")
        # For "conv", BatchNormalization stays a node of its own (for the
        # importer to fold) and the initializers are listed among the graph
        # inputs, as older exporters did.
        keep = name == "conv"
        torch.onnx.export(m, x, path, opset_version=13, input_names=["input"],
                          output_names=["logits"], do_constant_folding=not keep,
                          training=torch.onnx.TrainingMode.PRESERVE if keep else torch.onnx.TrainingMode.EVAL,
                          keep_initializers_as_inputs=keep)
        print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
