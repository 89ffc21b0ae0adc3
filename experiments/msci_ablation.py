"""MSCI's Table 1 on the synthetic dataset, rebuilt so that each arm differs from the full model in one factor:

| arm | differs from `msci` in |
|---|---|
| msci_no_cells | the LSTM cell states (reset before every update) |
| msci_no_sp | the super-pixels: regular 3x3 windows, aggregated the same way (means, or sums with --reduce sum) |
| msci_fcn | the context intertwining: the paper's "basic FCN", a 1x1 classifier on the output-stride-8 backbone |
| msci_sum | (not in the paper) Eq. 3-4 as the literal sums instead of the scale-free means |

Budget: every arm gets the **same compute**, not the same steps (`--budget macs`, the default): `--steps` is the full
model's number of steps, and an arm whose forward pass costs k times the full model's multiply-accumulates (counted
with `models.costs.model_costs` on one training crop) trains round(steps / k) steps. The FCN arm's dilated backbone
costs about 2.6x the MSCI arms at this size, so at equal steps it would get 2.6x the compute. `--budget steps` gives
every arm the same steps instead (the JSON records which). Training: AdamW lr 2e-3, poly, no auxiliary head, equal
for every arm, same seeds and data order; scored by the validation images' mIoU at full resolution; mean and std over
seeds and the paired gains (same seed) of the full model over each arm.

    .venv/bin/python experiments/msci_ablation.py --steps 800 --seeds 0 1 2            # the full run (not run here)
    .venv/bin/python experiments/msci_ablation.py --steps 2 --seeds 0 --out /tmp/msci_smoke.json   # a smoke run
    .venv/bin/python experiments/msci_ablation.py --device cuda --steps 4000            # the same run on a GPU

Table 1 from ImageNet weights, as the paper starts (what was run; about 70 CPU-minutes on one core here):

    .venv/bin/python experiments/msci_ablation.py --steps 300 --seeds 0 1 2 --variants msci msci_no_cells msci_no_sp msci_fcn \
        --backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0 --out experiments/results/msci_table1.json

Not the paper's numbers: no COCO pretraining, a small backbone (ResNet-18 from scratch by default, or ImageNet
EfficientNet-Lite0) with 32-channel intertwining instead of ResNet-152 with 256, synthetic 128x256 street scenes.
Writes experiments/results/msci_ablation.json (resumable run by run; runs of another setting are refused)."""
import argparse, json, math, platform, sys, time
from pathlib import Path
import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from boundaryseg.core import set_seed  # noqa: E402
from boundaryseg.data.block import seg_dataloaders  # noqa: E402
from boundaryseg.data.datasets import get_dataset  # noqa: E402
from boundaryseg.data.superpixels import SuperpixelProvider  # noqa: E402
from boundaryseg.recipes import Recipe  # noqa: E402
from boundaryseg.learner import seg_learner  # noqa: E402
from boundaryseg.inference import evaluate  # noqa: E402
from boundaryseg.models.costs import model_costs  # noqa: E402
from boundaryseg.models.zoo import ARCHS, seg_model  # noqa: E402
from boundaryseg.models.weights import parse_pretrained  # noqa: E402

VARIANTS = {  # name -> (registered architecture, builder options)
    'msci': ('msci', {}), 'msci_no_cells': ('msci_no_cells', {}), 'msci_no_sp': ('msci_no_sp', {}), 'msci_fcn': ('msci_fcn', {}),
    'msci_sum': ('msci', {'region_reduce': 'sum', 'neighbour_reduce': 'sum'}),
}
PAPER = {'msci': 85.1, 'msci_no_cells': 84.4, 'msci_no_sp': 84.3, 'msci_fcn': 77.8, 'msci_sum': None}  # Table 1, VOC 2012 val (%)


def options(name, a):
    "Builder options of an arm: its own, plus the aggregation of --reduce for the arms that aggregate (not the sum arm, not the FCN)."
    arch, kw = VARIANTS[name]
    if name not in ('msci_sum', 'msci_fcn'): kw = dict(kw, region_reduce=a.reduce, neighbour_reduce=a.reduce)
    return arch, kw


def arm_macs(name, a):
    "Multiply-accumulates of one forward pass of the arm on one training crop (with a super-pixel map where it reads one)."
    arch, kw = options(name, a)
    m = seg_model(arch, a.backbone, n_classes=19, width=a.width, **kw)
    h, w = a.crop
    sp = torch.arange(h // 8 * (w // 8)).view(1, h // 8, w // 8).repeat_interleave(8, 1).repeat_interleave(8, 2)  # 8x8 regions
    inputs = (torch.zeros(1, 3, h, w), *([sp] if m.inputs else []))
    return model_costs(m, rules='macs', inputs=inputs)['flops']


def budget_steps(macs:dict, steps:int, budget:str='macs', ref:str='msci') -> dict:
    "Steps of each arm: `steps` for all ('steps'), or the compute of `steps` steps of `ref` ('macs')."
    return {v: max(1, round(steps * macs[ref] / m)) if budget == 'macs' else steps for v, m in macs.items()}


class StopAfter(Callback):
    "Stop the fit after `n` training steps."
    order = 99
    def __init__(self, n): self.n = n
    def after_batch(self):
        if self.training and self.learn.train_iter >= self.n: raise CancelFitException()


def run(name, seed, steps, a, root, cache):
    "Train one arm with one seed for `steps` steps; its validation scores."
    arch, kw = options(name, a)
    set_seed(seed)
    dls = seg_dataloaders('synthetic', root=root, size=a.crop, bs=a.bs, seed=seed, inputs=ARCHS[arch].inputs, providers={'sp': cache},
                          n_train=a.n_train, n_val=a.n_val, image_size=a.image_size, device=a.device)
    rec = Recipe('msci_ablation', 'AdamW + poly (the CPU recipe of the main job), equal for every arm', opt='adamw',
                 lr=a.lr, wd=1e-2, head_lr_mult=1., aux=False, crop=tuple(a.crop), bs=a.bs)
    learn = seg_learner(dls, arch=arch, backbone=a.backbone, recipe=rec, checkpoint=None, path=Path(a.work) / f'{name}_{seed}',
                        width=a.width, metrics=[], pretrained=parse_pretrained(a.pretrained), **kw)
    epochs = math.ceil(steps / len(dls.train))  # the poly schedule runs over whole epochs; the fit stops at `steps`
    t = time.process_time()
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, cbs=[StopAfter(steps)])
    train_s = time.process_time() - t
    res = evaluate(learn.model, get_dataset('synthetic', root, 'val'), dls.c, tols=(), progress=False)
    return dict(arch=name, seed=seed, miou=float(res['miou']), acc=float(res['acc']), steps=int(learn.train_iter), train_cpu_s=round(train_s, 1),
                params=sum(p.numel() for p in learn.model.parameters()), options=kw)


def summarise(runs):
    "Mean and std (n-1) of each arm's mIoU (%), and the paired gains of the full model over each arm (same seeds)."
    out = {}
    for v in VARIANTS:
        m = [r['miou'] * 100 for r in runs if r['arch'] == v]
        if m: out[v] = dict(mean=float(np.mean(m)), std=float(np.std(m, ddof=1)) if len(m) > 1 else 0., n=len(m), paper=PAPER[v])
    gains = []
    for lo in VARIANTS:
        if lo == 'msci' or lo not in out or 'msci' not in out: continue
        d = [r1['miou'] * 100 - r2['miou'] * 100 for r1 in runs for r2 in runs if r1['arch'] == 'msci' and r2['arch'] == lo and r1['seed'] == r2['seed']]
        gains.append(dict(over=lo, paper_gain=None if PAPER[lo] is None else round(PAPER['msci'] - PAPER[lo], 1), gain_mean=float(np.mean(d)),
                          gain_std=float(np.std(d, ddof=1)) if len(d) > 1 else 0., seeds_positive=int(sum(x > 0 for x in d)), n=len(d)))
    return out, gains


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--variants', nargs='*', default=list(VARIANTS))
    ap.add_argument('--seeds', nargs='*', type=int, default=[0, 1, 2])
    ap.add_argument('--steps', type=int, default=800, help="the full model's training steps; the others' follow from --budget")
    ap.add_argument('--budget', choices=('macs', 'steps'), default='macs', help='equal compute (multiply-accumulates) or equal steps')
    ap.add_argument('--reduce', choices=('mean', 'sum'), default='mean', help='Eq. 3-4 aggregation of the arms that aggregate')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--crop', type=int, nargs=2, default=[96, 192])
    ap.add_argument('--image_size', type=int, nargs=2, default=[128, 256])
    ap.add_argument('--n_train', type=int, default=64)
    ap.add_argument('--n_val', type=int, default=16)
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--pretrained', default='none', help="backbone weights: none, timm, a file, or a registered source (e.g. efficientnet-lite0 with --backbone tf_efficientnet_lite0)")
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--work', default='runs/msci_ablation')
    ap.add_argument('--out', default=str(HERE / 'results' / 'msci_ablation.json'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # the literal sums' saturated gates underflow to denormals, ~10x slower on a CPU
    macs = {v: arm_macs(v, a) for v in set(a.variants) | {'msci'}}
    steps = budget_steps(macs, a.steps, a.budget)
    root = Path(a.work) / 'synthetic'
    cache = SuperpixelProvider(Path(a.work) / 'superpixels')  # SLIC once per image, shared by every run
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in vars(a).items() if k not in ('out', 'work', 'variants', 'seeds')}
    old = json.loads(out.read_text()) if out.exists() else {}
    same = lambda c: {k: v for k, v in c.items() if k not in ('recipe', 'torch', 'machine', 'threads', 'device')}
    if old and same(old.get('config', {})) != same(cfg):  # resume only runs of this setting (steps, budget, backbone, weights, data...)
        raise SystemExit(f"{out} holds runs of another setting: {same(old.get('config', {}))} (this: {same(cfg)}); pass another --out")
    runs = old.get('runs', [])
    summary, gains = summarise(runs)
    for seed in a.seeds:
        for v in a.variants:
            if any(r['arch'] == v and r['seed'] == seed for r in runs): continue
            r = run(v, seed, steps[v], a, root, cache)
            runs.append(r)
            print(f"{v:<14} seed {seed}: mIoU {r['miou'] * 100:5.2f}  ({r['steps']} steps, {r['train_cpu_s']:.0f} CPU s)", flush=True)
            summary, gains = summarise(runs)
            out.write_text(json.dumps(dict(config=dict(cfg, recipe='adamw lr %g wd 1e-2 poly 0.9, no aux' % a.lr, torch=torch.__version__,
                                                       machine=platform.machine()),
                                           macs={v: int(macs[v]) for v in a.variants}, steps=steps, runs=runs, summary=summary, gains=gains), indent=1))
    for v in a.variants: print(f"{v:<14} {macs[v] / 1e9:6.2f} GMACs/crop -> {steps[v]} steps")
    for v, s in summary.items(): print(f"{v:<14} {s['mean']:5.2f} ± {s['std']:.2f} (n={s['n']}; paper {s['paper']})")
    for g in gains: print(f"msci - {g['over']}: {g['gain_mean']:+.2f} ± {g['gain_std']:.2f} ({g['seeds_positive']}/{g['n']} seeds; paper {g['paper_gain']})")


if __name__ == '__main__':
    main()
