"""MSCI's head channels-last or channels-first, or its R/M kernels: seconds per training step of the whole model, in one process.

The question (issue 20, item 3): R/M of MSCI is 2-3x faster on channels-last features, so should the head be
channels-last by default (its weights in that format, so that its 1x1 reductions write channels-last maps without a
copy)? This times forward + backward of `seg_model('msci', backbone)` on two synthetic 256x512 images with their SLIC
super-pixels, the same weights in both layouts (the head converted with `.to(memory_format=torch.channels_last)`),
alternating the two models so that both see the same machine load, and checks that both give the same output.

    .venv/bin/python bench/msci_layout_step.py [--threads 2] [--reps 4] [--rounds 2] [--backbone resnet18]

`--compare kernel` instead times the channels-first model with R and M by the compiled run-sum / CSR kernels
(`RegionGraph(kernel='numba')`, the default where numba is installed) against torch's scatter_add and sparse product
(`kernel='torch'`), same weights, alternated the same way.

Prints only (the figures are quoted in 01e_data.superpixels)."""
import argparse, sys, time, warnings
from pathlib import Path
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from boundaryseg.models.zoo import seg_model  # noqa: E402
from boundaryseg.data.synthetic import synthetic_scene  # noqa: E402
from boundaryseg.data.superpixels import slic_superpixels, RegionGraph  # noqa: E402
import boundaryseg.models.msci as msci_module  # noqa: E402
from functools import partial  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--reps', type=int, default=4, help='timed steps per model and round (after one warm-up step)')
ap.add_argument('--rounds', type=int, default=2)
ap.add_argument('--backbone', default='resnet18')
ap.add_argument('--compare', default='layout', choices=['layout', 'kernel'])
a = ap.parse_args()
warnings.filterwarnings('ignore')
torch.set_num_threads(a.threads)
imgs = [synthetic_scene((256, 512), seed=i)[0] for i in range(2)]
sp = torch.stack([torch.from_numpy(slic_superpixels(im)) for im in imgs])
x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in imgs])
torch.manual_seed(0)
A, B = ('channels-first', 'channels-last head') if a.compare == 'layout' else ('R/M kernel numba', 'R/M kernel torch')
ms = {A: seg_model('msci', a.backbone, n_classes=19)}
ms[B] = seg_model('msci', a.backbone, n_classes=19)
ms[B].load_state_dict(ms[A].state_dict())
if a.compare == 'layout': ms[B].head.to(memory_format=torch.channels_last)
kernel = {A: 'numba' if a.compare == 'kernel' else 'auto', B: 'torch' if a.compare == 'kernel' else 'auto'}


def run(k, m):
    msci_module.RegionGraph = partial(RegionGraph, kernel=kernel[k])  # the graph the head builds for this model
    return m(x, sp)['seg']


with torch.no_grad():
    outs = {k: run(k, m.eval()) for k, m in ms.items()}
diff = float((outs[A] - outs[B]).abs().max())
assert diff < 1e-4, diff
if a.compare == 'layout': assert outs[B].permute(0, 2, 3, 1).is_contiguous()


def step(k, m):
    m.zero_grad()
    run(k, m).square().mean().backward()


times = {k: [] for k in ms}
for k, m in ms.items(): m.train(); step(k, m)
for _ in range(a.rounds):
    for k, m in ms.items():
        for _ in range(a.reps):
            t = time.perf_counter(); step(k, m); times[k].append(time.perf_counter() - t)
med = {k: float(np.median(v)) for k, v in times.items()}
print(f"MSCI on {a.backbone}, two 256x512 images, {a.threads} threads, outputs equal to {diff:.1e}")
for k, v in times.items(): print(f"{k:20s} median {med[k]:.2f} s per training step ({', '.join(f'{t:.2f}' for t in v)})")
print(f"{B} / {A}: {med[B] / med[A]:.3f}")
