"""Seconds per training step (forward + backward, bf16 autocast as the main job on CPU) of the main job's model:
FastFCN-PSP, ResNet-18, width 128, a batch of eight 128x256 crops. Prints each of three steps. It shows how fast a
machine runs the main job, whose time is 960 such steps plus evaluation; with PYTHONPATH pointing at another checkout
it times that checkout's code on the same machine:

    .venv/bin/python bench/bench_step.py [--threads 2]
    PYTHONPATH=/path/to/old/checkout .venv/bin/python bench/bench_step.py   # e.g. a worktree of an earlier commit
"""
import argparse, time
import torch

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--steps', type=int, default=3)
a = ap.parse_args()
torch.set_num_threads(a.threads)
try: from boundaryseg.models.zoo import seg_model
except ImportError: from boundaryseg.models.heads import seg_model  # checkouts before the registry refactor
m = seg_model('fastfcn_psp', 'resnet18', n_classes=19, width=128).train()
x = torch.randn(8, 3, 128, 256)
for i in range(a.steps):
    t = time.time()
    with torch.autocast('cpu', dtype=torch.bfloat16): out = m(x)
    (out['seg'].float().mean() + (out['aux'].float().mean() if 'aux' in out else 0)).backward()
    print(f'step {i}: {time.time() - t:.2f} s', flush=True)
