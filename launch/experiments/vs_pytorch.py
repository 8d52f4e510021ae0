#!/usr/bin/python3
"""vs_pytorch.py - PyTorch's side of launch/experiments/vs_pytorch.sh.

Trains the model of launch/configs/fmnist_cnn.yaml or fmnist_mlp.yaml with
the recipe of those configs, as larch does:
  - data: the Fashion-MNIST idx .gz files of DIR, read whole into memory,
    pixels x / 255 normalized with larch's mean 0.2860 and std 0.3530;
  - every epoch a fresh shuffle of the 60000 training images, batches of
    BATCH with the last incomplete batch dropped (larch's drop_last);
  - SGD, momentum 0.9, Nesterov, weight decay on weights only (larch's
    default: not on biases nor batch-norm scale/shift), lr 0.05;
  - per-step cosine schedule to 0 after a linear warmup of round(0.1 epoch)
    steps from 0, the formulas of src/optim/schedule.c;
  - He (Kaiming normal, fan in) initialization, zero biases;
  - the test set scored at the end of every epoch in batches of 1000.
Threads: torch.set_num_threads(THREADS) and one inter-op thread (the
caller also sets OMP_NUM_THREADS).

Prints one JSON line on stdout: train_samples_per_s is the step window
(batch slicing + forward + backward + update, evaluation excluded) as in
larch's metrics.jsonl; wall_s is measured by the caller from process start.
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise SystemExit(f"vs_pytorch.py: {path}: not an unsigned-byte idx file (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise SystemExit(f"vs_pytorch.py: {path}: {arr.size} bytes for dimensions {dims}")
    return arr.reshape(dims)


def load(dirname, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(dirname, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(dirname, f"{prefix}-labels-idx1-ubyte.gz"))
    x = (torch.from_numpy(x.astype(np.float32)) / 255.0 - MEAN) / STD
    return x.unsqueeze(1).contiguous(), torch.from_numpy(y.astype(np.int64))


def make_model(name):
    if name == "fmnist_cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32, eps=1e-5, momentum=0.1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64, eps=1e-5, momentum=0.1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(7 * 7 * 64, 256), nn.ReLU(), nn.Linear(256, 10))
    if name == "fmnist_mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 10))
    raise SystemExit(f"vs_pytorch.py: unknown model {name} (fmnist_cnn or fmnist_mlp)")


# the configs' recipes (launch/configs/fmnist_{cnn,mlp}.yaml)
RECIPES = {"fmnist_cnn": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "warmup_epochs": 0.1},
           "fmnist_mlp": {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "warmup_epochs": 0.1}}


def lr_at(t, base, total, warm):
    """src/optim/schedule.c: cosine to min_lr = 0 over (t - W) / (T - W),
    times the linear warmup factor (t + 1) / W from warmup_start 0."""
    p = (t - warm) / (total - warm) if total > warm else 0.0
    lr = base * (1.0 + math.cos(math.pi * p)) / 2.0
    if t < warm:
        lr *= (t + 1) / warm
    return lr


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = model(x[i:i + batch])
            loss += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return loss / x.shape[0], correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, choices=sorted(RECIPES))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "test")
    model = make_model(a.model)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    rec = RECIPES[a.model]
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]          # weights of conv and dense layers
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]      # biases, batch-norm scale/shift
    opt = torch.optim.SGD([{"params": decay, "weight_decay": rec["weight_decay"]},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=rec["lr"], momentum=rec["momentum"], nesterov=True)
    steps_per_epoch = xtr.shape[0] // a.batch
    total = steps_per_epoch * a.epochs
    warm = round(rec["warmup_epochs"] * steps_per_epoch)
    gen = torch.Generator().manual_seed(a.seed)
    t_steps, t_eval, step = 0.0, 0.0, 0
    acc = loss_te = float("nan")
    model.train()
    for epoch in range(a.epochs):
        perm = torch.randperm(xtr.shape[0], generator=gen)
        for s in range(steps_per_epoch):
            t0 = time.perf_counter()
            idx = perm[s * a.batch:(s + 1) * a.batch]
            xb, yb = xtr[idx], ytr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, rec["lr"], total, warm)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            t_steps += time.perf_counter() - t0
            step += 1
        t0 = time.perf_counter()
        loss_te, acc = evaluate(model, xte, yte)
        t_eval += time.perf_counter() - t0
        print(f"torch {a.model}: epoch {epoch + 1}/{a.epochs}  train loss {loss.item():.4f}  test loss {loss_te:.4f}  "
              f"test accuracy {acc:.4f}", file=sys.stderr, flush=True)
    print(json.dumps({"framework": "pytorch", "version": torch.__version__, "model": a.model, "epochs": a.epochs,
                      "batch": a.batch, "threads": a.threads, "steps": step,
                      "train_samples_per_s": round(step * a.batch / t_steps, 1), "train_s": round(t_steps, 3),
                      "eval_s": round(t_eval, 3), "test_loss": round(loss_te, 5), "test_accuracy": round(acc, 4)}))


if __name__ == "__main__":
    main()
