"""MiniDL's 64x64 stride-1 average pool (Seamless' semantic branch), computed two ways in one process: torch's
`F.avg_pool2d` and `box_mean`'s running sums (`panoptic.semantic.replicate_pool(method=...)`), forward and backward,
on the FPN levels P2..P5 of a batch of the synthetic Seamless run (4 images padded to 480x960, 128 channels) and at
Cityscapes' training size (1 image of 1024x2048, 256 channels: the paper's setting), with the largest difference from
a float64 reference. Medians of --repeats; the ratio is the figure (machines are noisy).

    .venv/bin/python bench/bench_minidl_pool.py                 # about a minute on two cores
    .venv/bin/python bench/bench_minidl_pool.py --threads 1 --repeats 5

Prints a table; the figures are quoted in nbs/22_panoptic.semantic.ipynb."""
import argparse, statistics, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from boundaryseg.panoptic.semantic import replicate_pool  # noqa: E402

SETTINGS = {'synthetic run, batch 4 x 480x960, 128 ch': (4, 128, 480, 960), 'Cityscapes crop, 1 x 1024x2048, 256 ch': (1, 256, 1024, 2048)}


def timed(fn, x, repeats):
    fw, bw = [], []
    for _ in range(repeats):
        xx = x.detach().requires_grad_()
        t0 = time.perf_counter(); y = fn(xx); t1 = time.perf_counter()
        y.backward(torch.ones_like(y)); t2 = time.perf_counter()
        fw.append(t1 - t0); bw.append(t2 - t1)
    return statistics.median(fw), statistics.median(bw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print('| setting | level | map | avg_pool fwd / bwd (s) | cumsum fwd / bwd (s) | speed-up (fwd+bwd) | max err vs float64: avg_pool / cumsum |')
    print('|---|---|---|---|---|---:|---|')
    for name, (b, c, h, w) in SETTINGS.items():
        for lvl, s in zip(('P2', 'P3', 'P4', 'P5'), (4, 8, 16, 32)):
            x = torch.randn(b, c, h // s, w // s)
            ref = replicate_pool(x.double(), method='avg_pool')
            err = {m: (replicate_pool(x, method=m).double() - ref).abs().max().item() for m in ('avg_pool', 'cumsum')}
            t = {m: timed(lambda v, m=m: replicate_pool(v, method=m), x, a.repeats) for m in ('avg_pool', 'cumsum')}
            print(f"| {name} | {lvl} | {h // s}x{w // s} | {t['avg_pool'][0]:.3f} / {t['avg_pool'][1]:.3f} | {t['cumsum'][0]:.3f} / {t['cumsum'][1]:.3f} | "
                  f"{sum(t['avg_pool']) / sum(t['cumsum']):.1f}x | {err['avg_pool']:.1e} / {err['cumsum']:.1e} |", flush=True)


if __name__ == '__main__':
    main()
