#!/usr/bin/python3
"""compare_torch_resnet18.py - larch's resnet18 against torchvision's, logits.

Creates a torchvision resnet18 with random weights and randomized batch-norm
statistics (eval mode), writes its state_dict as safetensors (the format
written here with struct/json), writes a few random 224x224x3 images as an
HDF5 dataset split (float features, channels-last, labels), runs

    larch import  MODEL.safetensors --config launch/configs/resnet18.yaml \
                  --map launch/configs/resnet18_torchvision.map --out MODEL.h5
    larch predict launch/configs/resnet18.yaml --checkpoint MODEL.h5 \
                  --data DATA.h5:/images --out OUT.h5

and compares larch's logits with PyTorch's: max |larch - torch| / max |torch|
must be at most 1e-4; then `larch export --map` must give back every tensor
of the state_dict (num_batches_tracked aside) bit for bit. Not part of the test suite (it needs Debian's
python3-torch, python3-torchvision and python3-h5py: apt-get install them).

    /usr/bin/python3 launch/compare_torch_resnet18.py [--larch build/larch] [--images 4] [--seed 0]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))


def write_safetensors(path, state):
    """state: name -> torch tensor (float32, or int64 for num_batches_tracked)."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in state.items():
        t = t.detach().contiguous().cpu()
        if t.dtype == torch.float32:
            dtype, raw = "F32", t.numpy().astype("<f4").tobytes()
        elif t.dtype == torch.int64:
            dtype, raw = "I64", t.numpy().astype("<i8").tobytes()
        else:
            raise ValueError(f"{name}: dtype {t.dtype}")
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """name -> numpy float32 array (F32 files only)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            raise ValueError(f"{path}: {name}: dtype {e['dtype']}")
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--larch", default=os.path.join(HERE, "..", "build", "larch"))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--keep", help="keep the files in this directory")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    model = torchvision.models.resnet18(weights=None, num_classes=1000)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):   # non-trivial statistics and affine parameters
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if isinstance(m, torch.nn.Linear):
                m.bias.uniform_(-0.1, 0.1)
    model.eval()
    x = torch.randn(a.images, 3, 224, 224)
    with torch.no_grad():
        ref = model(x).numpy()

    work = a.keep or tempfile.mkdtemp(prefix="larch_cmp_")
    os.makedirs(work, exist_ok=True)
    st, ck, data, out, back = (os.path.join(work, n) for n in
                               ("resnet18.safetensors", "resnet18.h5", "images.h5", "logits.h5", "exported.safetensors"))
    write_safetensors(st, model.state_dict())
    with h5py.File(data, "w") as f:                    # larch's dataset layout: channels-last features
        g = f.create_group("images")
        g.create_dataset("features", data=x.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32))
        g.create_dataset("labels", data=np.zeros(a.images, dtype=np.int32))
    cfg = os.path.join(HERE, "configs", "resnet18.yaml")
    rules = os.path.join(HERE, "configs", "resnet18_torchvision.map")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for cmd in ([a.larch, "import", st, "--config", cfg, "--map", rules, "--out", ck],
                [a.larch, "predict", cfg, "--checkpoint", ck, "--data", data + ":/images", "--out", out,
                 "--batch", str(a.images)],
                [a.larch, "export", ck, "--config", cfg, "--format", "safetensors", "--map", rules, "--out", back]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            sys.exit(f"failed: {' '.join(cmd)}")
    with h5py.File(out, "r") as f:
        got = f["outputs"][...]
    exported, state = read_safetensors(back), model.state_dict()
    want = {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    export_ok = set(exported) == set(want) and all(np.array_equal(exported[k], want[k]) for k in want)
    print(f"larch export: {len(exported)} tensors under torchvision's names and layouts, "
          f"{'bit-identical to' if export_ok else 'DIFFERENT from'} the state_dict's {len(want)}")
    err = np.abs(got - ref).max() / np.abs(ref).max()
    per = np.abs(got - ref).max(axis=1) / np.abs(ref).max(axis=1)
    same_top1 = (got.argmax(1) == ref.argmax(1)).mean()
    print(f"resnet18, {a.images} image(s) 224x224x3: max |larch - torch| / max |torch| = {err:.3g} "
          f"(per image: {', '.join(f'{v:.3g}' for v in per)}); max |torch| = {np.abs(ref).max():.4g}; "
          f"top-1 agreement {same_top1:.2f}; tolerance {a.tolerance:g}")
    if not a.keep:
        for p in (st, ck, data, out, back):
            os.remove(p)
        os.rmdir(work)
    sys.exit(0 if err <= a.tolerance and export_ok else 1)


if __name__ == "__main__":
    main()
