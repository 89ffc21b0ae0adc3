"""MSCI's Table 1 on the synthetic dataset: full MSCI, no cell states, no super-pixels (regular windows) and the FCN
baseline (and, not in the paper, full MSCI with Eq. 3 as a mean), each trained from scratch for the same number of steps with the same data, recipe and seeds, scored by the
mIoU of the validation images at full resolution; mean and std over seeds. Writes bench/results/msci_ablation.json,
which the tutorial (nbs/tutorials/msci.ipynb) shows.

    .venv/bin/python bench/msci_ablation.py                       # the committed run (5 variants x 3 seeds)
    .venv/bin/python bench/msci_ablation.py --seeds 0 --epochs 1  # a smoke run (writes to --out)

Budget: about a CPU-hour on one core for the default setting. The numbers are not the paper's: no ImageNet or COCO
pretraining, a ResNet-18 with 32-channel intertwining instead of a ResNet-152 with 256, synthetic street scenes at 128x256, minutes
instead of 120k iterations. What is compared is the direction of each difference at equal steps."""
import argparse, json, platform, sys, time
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from boundaryseg.core import set_seed  # noqa: E402
from boundaryseg.data.block import seg_dataloaders  # noqa: E402
from boundaryseg.data.datasets import get_dataset  # noqa: E402
from boundaryseg.data.superpixels import SuperpixelProvider  # noqa: E402
from boundaryseg.recipes import Recipe  # noqa: E402
from boundaryseg.learner import seg_learner  # noqa: E402
from boundaryseg.inference import evaluate  # noqa: E402
from boundaryseg.models.zoo import ARCHS  # noqa: E402

VARIANTS = {  # name -> (registered architecture, builder options)
    'msci': ('msci', {}), 'msci_no_cells': ('msci_no_cells', {}), 'msci_no_sp': ('msci_no_sp', {}), 'msci_fcn': ('msci_fcn', {}),
    'msci_mean': ('msci', {'region_reduce': 'mean'}),  # not in the paper: Eq. 3 as a mean instead of a sum
}
PAPER = {'msci': 85.1, 'msci_no_cells': 84.4, 'msci_no_sp': 84.3, 'msci_fcn': 77.8, 'msci_mean': None}  # Table 1, VOC 2012 val (%)
DIRECTIONS = [('msci', 'msci_no_cells'), ('msci', 'msci_no_sp'), ('msci', 'msci_fcn'), ('msci_no_cells', 'msci_fcn'),
              ('msci_no_sp', 'msci_fcn')]


def run(name, seed, a, root, cache):
    "Train one variant with one seed; its validation scores."
    arch, kw = VARIANTS[name]
    set_seed(seed)
    inputs = ARCHS[arch].inputs
    dls = seg_dataloaders('synthetic', root=root, size=a.crop, bs=a.bs, seed=seed, inputs=inputs, providers={'sp': cache},
                          n_train=a.n_train, n_val=a.n_val, image_size=a.image_size, device='cpu')
    rec = Recipe('msci_ablation', 'AdamW + poly (the CPU recipe of the main job), equal for every variant', opt='adamw',
                 lr=a.lr, wd=1e-2, head_lr_mult=1., aux=False, crop=tuple(a.crop), bs=a.bs)
    learn = seg_learner(dls, arch=arch, backbone=a.backbone, recipe=rec, checkpoint=None, path=Path(a.work) / f'{arch}_{seed}',
                        width=a.width, metrics=[], **kw)
    t = time.process_time()
    with learn.no_bar(), learn.no_logging(): learn.fit(a.epochs)
    train_s = time.process_time() - t
    steps = a.epochs * len(dls.train)
    res = evaluate(learn.model, get_dataset('synthetic', root, 'val'), dls.c, tols=(), progress=False)
    return dict(arch=name, seed=seed, miou=float(res['miou']), acc=float(res['acc']), steps=steps, train_cpu_s=round(train_s, 1),
                params=sum(p.numel() for p in learn.model.parameters()))


def summarise(runs):
    out = {}
    for v in VARIANTS:
        m = [r['miou'] * 100 for r in runs if r['arch'] == v]
        if m: out[v] = dict(mean=float(np.mean(m)), std=float(np.std(m, ddof=1)) if len(m) > 1 else 0., n=len(m), paper=PAPER[v],
                            options=VARIANTS[v][1])
    dirs = []
    for hi, lo in DIRECTIONS:
        if hi not in out or lo not in out: continue
        d = [r1['miou'] * 100 - r2['miou'] * 100 for r1 in runs for r2 in runs if r1['arch'] == hi and r2['arch'] == lo and r1['seed'] == r2['seed']]
        dirs.append(dict(better=hi, worse=lo, paper_diff=round(PAPER[hi] - PAPER[lo], 1), diff_mean=float(np.mean(d)),
                         diff_std=float(np.std(d, ddof=1)) if len(d) > 1 else 0., seeds_agreeing=int(sum(x > 0 for x in d)), n=len(d),
                         holds=bool(np.mean(d) > 0)))
    return out, dirs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--variants', nargs='*', default=list(VARIANTS))
    ap.add_argument('--seeds', nargs='*', type=int, default=[0, 1, 2])
    ap.add_argument('--epochs', type=int, default=20)
    ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--crop', type=int, nargs=2, default=[96, 192])
    ap.add_argument('--image_size', type=int, nargs=2, default=[128, 256])
    ap.add_argument('--n_train', type=int, default=64)
    ap.add_argument('--n_val', type=int, default=16)
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--work', default='runs/msci_ablation')
    ap.add_argument('--out', default=str(HERE / 'results' / 'msci_ablation.json'))
    a = ap.parse_args()
    torch.set_num_threads(1)
    # Region sums (Eq. 3) saturate the gates, whose gradients then underflow to denormal floats, which a CPU computes
    # ~10x slower; flushing them to zero changes nothing above 1e-38 and makes the sum variants train at normal speed.
    torch.set_flush_denormal(True)
    root = Path(a.work) / 'synthetic'
    cache = SuperpixelProvider(Path(a.work) / 'superpixels')  # SLIC once per image, shared by every run
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text())['runs'] if out.exists() else []  # resume: runs already recorded are kept
    runs = [r for r in runs if r['arch'] in a.variants and r['seed'] in a.seeds]
    for seed in a.seeds:
        for arch in a.variants:
            if any(r['arch'] == arch and r['seed'] == seed for r in runs): continue
            r = run(arch, seed, a, root, cache)
            runs.append(r)
            print(f"{arch:<14} seed {seed}: mIoU {r['miou'] * 100:5.2f}  ({r['steps']} steps, {r['train_cpu_s']:.0f} CPU s)", flush=True)
            summary, dirs = summarise(runs)
            cfg = {k: v for k, v in vars(a).items() if k not in ('out', 'work')}
            out.write_text(json.dumps(dict(config=dict(cfg, recipe='adamw lr %g wd 1e-2 poly 0.9, no aux' % a.lr, torch=torch.__version__,
                                                       machine=platform.machine(), threads=1),
                                           runs=runs, summary=summary, directions=dirs), indent=1))
    for v, s in summary.items(): print(f"{v:<14} {s['mean']:5.2f} ± {s['std']:.2f} (n={s['n']}; paper {s['paper']})")
    for d in dirs: print(f"{d['better']} > {d['worse']}: {d['diff_mean']:+.2f} ± {d['diff_std']:.2f} ({d['seeds_agreeing']}/{d['n']} seeds; paper {d['paper_diff']:+.1f})")


if __name__ == '__main__':
    main()
