"""Training-step overhead of `seg_learner`'s fastai Learner against a plain PyTorch loop, on the same model, batches,
loss, optimizer and poly schedule. Epochs of the two alternate in one process (ABBA); the ratio is of the
median wall time per step, data loading included. Target: <= 1.05. Writes bench/out/learner.json.

    python bench/bench_learner.py            # default (about a minute on 2 CPU cores)
    python bench/bench_learner.py --full     # adds a ResNet-18 FCN and the main job's FastFCN-PSP at 128x128

The first case (a model that costs next to nothing) measures the absolute per-step cost of the Learner; the ratio is
meaningful for the others.
"""
import argparse, json, statistics, time
from pathlib import Path
import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from boundaryseg.learner import seg_learner, param_groups

OUT = Path(__file__).parent/'out'


class StepTimer(Callback):
    "Wall time of every training step, data loading included (the time between the ends of consecutive steps)."
    order = 100
    def before_fit(self): self.steps = []
    def before_train(self): self.t = time.perf_counter()
    def after_batch(self):
        if not self.training: return
        t = time.perf_counter()
        self.steps.append(t - self.t)
        self.t = t


def plain_epoch(model, dl, loss_func, opt, base_lrs, it0, total, power=0.9):
    "The authors' loop: poly lr per group per iteration, forward, loss, backward, step; returns each step's wall time."
    model.train()
    steps, t_prev = [], time.perf_counter()
    for i, (x, y) in enumerate(dl):
        for g, lr in zip(opt.param_groups, base_lrs): g['lr'] = lr * (1 - (it0 + i) / total) ** power
        loss = loss_func(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        t = time.perf_counter()
        steps.append(t - t_prev)
        t_prev = t
    return steps


def bench(name, arch, backbone, size, bs, n_batches, rounds, C=19, **model_kw):
    torch.manual_seed(0)
    xs = torch.randn(n_batches * bs, 3, size, size)
    ys = torch.randint(0, C, (n_batches * bs, size, size))
    ds = list(zip(xs, ys))
    dls = DataLoaders.from_dsets(ds, ds[:bs], bs=bs, num_workers=0, device='cpu')
    # FastFCN's recipe (SGD, L2 1e-4, poly, heads at 10x) is what the plain loop below writes out
    seg = seg_learner(dls, arch=arch, backbone=backbone, n_classes=C, recipe='fastfcn', path='/tmp/bench_learner', checkpoint=None,
                      metrics=[], **model_kw)
    # all three train the same model object (same memory layout) on the same DataLoader with the same loss object;
    # fastai's bare Learner (its default callbacks only) separates fastai's own cost from seg_learner's callbacks
    model = seg.model
    bare = Learner(dls, model, loss_func=seg.loss_func, opt_func=seg.opt_func, splitter=param_groups, lr=0.01, wd=1e-4,
                   path='/tmp/bench_learner')
    for l in (seg, bare): l.add_cb(StepTimer())
    groups = [list(model.backbone.parameters()), [p for m in model.head_modules() for p in m.parameters()]]
    base, total = [0.01, 0.1], 3 * rounds * n_batches
    opt = torch.optim.SGD([{'params': g, 'lr': lr} for g, lr in zip(groups, base)], momentum=0.9, weight_decay=1e-4)
    steps = {'plain': [], 'fastai': [], 'seg': []}
    def run(which):
        if which == 'plain': steps['plain'] += plain_epoch(model, dls.train, seg.loss_func, opt, base, len(steps['plain']), total)
        else:
            l = seg if which == 'seg' else bare
            with l.no_bar(), l.no_logging(): l.fit(1)
            steps[which] += l.step_timer.steps
    for w in steps: run(w)  # warm-up
    for w in steps: steps[w].clear()
    order = list(steps)
    for r in range(rounds):  # alternate the order, so that a drift of the machine's speed hits all alike
        for w in (order if r % 2 == 0 else order[::-1]): run(w)
    ms = {w: 1000 * statistics.median(v) for w, v in steps.items()}
    return dict(name=name, arch=arch, backbone=backbone, input=f'{bs}x3x{size}x{size}', steps=len(steps['plain']),
                **{f'{w}_ms_per_step': round(v, 3) for w, v in ms.items()},
                overhead_ms_per_step=round(ms['seg'] - ms['plain'], 3),
                ratio_fastai=round(ms['fastai'] / ms['plain'], 4), ratio=round(ms['seg'] / ms['plain'], 4))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--full', action='store_true', help='also time a ResNet-18 FCN at 128x128')
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)  # several threads on a loaded machine make every step slow and noisy
    cases = [('no-op model', 'fcn', 'test_resnet', 16, 2, 32, dict(ch=8)),
             ('fcn test_resnet', 'fcn', 'test_resnet', 64, 4, 16, dict(ch=32)),
             ('fastfcn_encnet', 'fastfcn_encnet', 'test_resnet', 64, 4, 8, dict(ch=32))]
    if a.full:
        cases.append(('fcn resnet18', 'fcn', 'resnet18', 128, 4, 8, {}))
        # the main job's model (`boundaryseg main`): FastFCN-PSP, ResNet-18, JPU and head width 128
        cases.append(('main-job model', 'fastfcn_psp', 'resnet18', 128, 8, 6, dict(width=128)))
    rows = [bench(n, arch, bb, size, bs, nb, a.rounds, **kw) for n, arch, bb, size, bs, nb, kw in cases]
    print(f"{'case':16} {'input':14} {'plain ms/step':>14} {'fastai Learner':>15} {'seg_learner':>12} {'overhead ms':>12} "
          f"{'fastai/plain':>13} {'seg/plain':>10}")
    for r in rows:
        print(f"{r['name']:16} {r['input']:14} {r['plain_ms_per_step']:14.2f} {r['fastai_ms_per_step']:15.2f} "
              f"{r['seg_ms_per_step']:12.2f} {r['overhead_ms_per_step']:12.2f} {r['ratio_fastai']:13.3f} {r['ratio']:10.3f}")
    OUT.mkdir(parents=True, exist_ok=True)
    res = dict(target_ratio=1.05, torch_threads=torch.get_num_threads(), rows=rows,
               note='median step time over alternating epochs; seg_learner runs its defaults (SegLoss terms, loss-term logging, '
                    'non-finite check, poly schedule, CSV log, Recorder) without progress bar and checkpoints; fastai = a bare '
                    'fastai Learner with the same model, loss and optimizer. The no-op model shows the absolute per-step cost.')
    (OUT/'learner.json').write_text(json.dumps(res, indent=1))
    print(f"wrote {OUT/'learner.json'}")


if __name__ == '__main__': main()
