"""MiniDL's 64x64 stride-1 average pool (Seamless' semantic branch), computed two ways in one process: torch's
`F.avg_pool2d` and `box_mean`'s running sums (`panoptic.semantic.replicate_pool(method=...)`), forward and backward,
on the FPN levels P2..P5 of a batch of the synthetic Seamless run (4 images padded to 480x960, 128 channels) and at
Cityscapes' training size (1 image of 1024x2048, 256 channels: the paper's setting), with the largest difference from
a float64 reference. Medians of --repeats; the ratio is the figure (machines are noisy).

    .venv/bin/python bench/bench_minidl_pool.py                 # about a minute on two cores
    .venv/bin/python bench/bench_minidl_pool.py --threads 1 --repeats 5
    .venv/bin/python bench/bench_minidl_pool.py --step      # also a whole Seamless training step each way (about 3 minutes)

`--step` times (a warm-up, then each way twice, alternated) the forward and backward pass of the synthetic run's model (`bench/seamless_synthetic.py`: ResNet-18,
its budget heads, the six loss terms) on one batch of its loader, with MiniDL's `pool_method` set each way.

Prints a table; the figures are quoted in nbs/22_panoptic.semantic.ipynb."""
import argparse, statistics, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from boundaryseg.panoptic.semantic import replicate_pool, MiniDL  # noqa: E402

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
    ap.add_argument('--step', action='store_true', help='also time a whole training step of the synthetic Seamless run each way')
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

    if a.step: step(a)


def step(a, data='/tmp/bench_minidl_pool_data'):
    "Forward + backward of the synthetic Seamless run's model on one batch, MiniDL's pool each way: a warm-up, then the two alternated twice (once if --repeats is 1), medians."
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from seamless_synthetic import SYNTHETIC, budget_model_kw
    from boundaryseg.core import set_seed
    from boundaryseg.panoptic.data import panoptic_dataloaders
    from boundaryseg.learner import seg_learner
    set_seed(0)
    h, w = SYNTHETIC['image_size']
    dls = panoptic_dataloaders('synthetic', data, short=SYNTHETIC['short'], scale=SYNTHETIC['scale'], max_long=SYNTHETIC['max_long'],
                               bs=4, seed=0, device='cpu', n_train=8, n_val=2, image_size=(h, w))
    learn = seg_learner(dls, 'seamless', 'resnet18', recipe='seamless', path='/tmp/bench_minidl_pool_run', checkpoint=None, **budget_model_kw(h, w))
    model = learn.model.train()
    img, mask, inst = (torch.Tensor(t).as_subclass(torch.Tensor) for t in dls.one_batch())
    def run():
        model.zero_grad()
        t0 = time.perf_counter()
        learn.loss_func(model(img, mask, inst), mask, inst).backward()
        return time.perf_counter() - t0
    t = {}
    run()  # warm-up (allocations), not counted
    for m in ('avg_pool', 'cumsum', 'avg_pool', 'cumsum')[:2 if a.repeats < 2 else 4]:  # alternated, so that drift hits both
        for mod in model.modules():
            if isinstance(mod, MiniDL): mod.pool_method = m
        t.setdefault(m, []).append(run())
    med = {m: statistics.median(v) for m, v in t.items()}
    print(f"\nSeamless training step (forward + backward, batch {tuple(img.shape)}, ResNet-18, {a.threads} threads): "
          f"avg_pool {med['avg_pool']:.2f} s, cumsum {med['cumsum']:.2f} s: {med['avg_pool'] / med['cumsum']:.2f}x "
          f"(each: {', '.join(f'{m} ' + ' / '.join(f'{x:.2f}' for x in v) for m, v in t.items())})")


if __name__ == '__main__':
    main()
