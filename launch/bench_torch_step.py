#!/usr/bin/python3
"""PyTorch's training step on the models of launch/configs/fmnist_cnn.yaml and
launch/configs/cifar_resnet20.yaml, for comparison with `larch bench step`.

usage: bench_torch_step.py MODEL THREADS [--batch N] [--rounds R] [--format nchw|channels_last|both]
  MODEL: fmnist_cnn | cifar_resnet20

One step = zero_grad, forward, cross-entropy, backward, SGD (momentum 0.9,
Nesterov, weight decay), as larch's benchmark step. Threads are pinned with
torch.set_num_threads (set OMP_NUM_THREADS too, before Python starts). Each
memory format gets 5 warm-up steps, then R rounds of about 0.3 s; the best
round counts. Prints one JSON line per format and one for the faster
("format": "best").
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn


def fmnist_cnn():
    # conv(32) bn relu pool, conv(64) bn relu pool, dense(256) relu, dense(10); convs without bias
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10)), (1, 28, 28), 256


class BasicBlock(nn.Module):
    """ResNet basic block; option B: a 1x1 strided conv + batch norm where the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


def cifar_resnet20():
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers), (3, 32, 32), 128


MODELS = {"fmnist_cnn": fmnist_cnn, "cifar_resnet20": cifar_resnet20}


def measure(name, threads, batch, rounds, channels_last):
    torch.manual_seed(0)
    model, shape, default_batch = MODELS[name]()
    batch = batch or default_batch
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    t0 = time.perf_counter()
    step()
    reps = max(1, int(0.3 / max(time.perf_counter() - t0, 1e-6)))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        best = min(best, (time.perf_counter() - t0) / reps)
    return {"bench": "torch_step", "model": name, "batch": batch, "threads": threads,
            "format": "channels_last" if channels_last else "nchw", "step_ms": round(best * 1e3, 4),
            "samples_per_s": round(batch / best, 1), "rounds": rounds, "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("threads", type=int)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--format", choices=("nchw", "channels_last", "both"), default="both")
    a = ap.parse_args()
    if a.threads < 1 or a.rounds < 1 or a.batch < 0:
        ap.error("threads and rounds must be positive, batch non-negative")
    torch.set_num_threads(a.threads)
    formats = {"nchw": [False], "channels_last": [True], "both": [False, True]}[a.format]
    results = [measure(a.model, a.threads, a.batch, a.rounds, cl) for cl in formats]
    for r in results:
        print(json.dumps(r), flush=True)
    best = dict(min(results, key=lambda r: r["step_ms"]))
    best["best_of"] = best["format"]
    best["format"] = "best"
    print(json.dumps(best), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
