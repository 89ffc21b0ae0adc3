"""RPCNet's ablations (Tables 1 and 2) on the synthetic dataset: duality loss, ∇M fusion, the pyramid context module and
the number of steps S, each trained from scratch for the same number of steps with the same data, recipe and seeds,
scored on the validation images at full resolution with flip (mIoU; MF-ODS and AP of the boundaries, SBD 'raw'
protocol); mean and std over seeds. Then the full model of the first seed is saved and scored through the command line,
`boundaryseg eval`, without and with Test-NMS, both under 'sbd-thin' (thin GT, thinned predictions: the
protocol Test-NMS is made for; under 'sbd-raw' thinning the predictions can only lose recall against radius-2 GT). Writes bench/results/rpcnet_ablation.json, which the tutorial
(nbs/tutorials/rpcnet.ipynb) shows.

    .venv/bin/python bench/rpcnet_ablation.py                        # the committed run (8 variants x 3 seeds + the CLI evals)
    .venv/bin/python bench/rpcnet_ablation.py --seeds 0 --epochs 1 --variants full s2 --out /tmp/smoke.json   # a smoke run

Budget: about 70 CPU-minutes on one core for the default setting. The numbers are not the paper's: no ImageNet
pretraining, a ResNet-18 with 32-channel levels instead of a ResNet-101 with 256, synthetic street scenes at 64x128,
300 AdamW steps instead of 44.6k SGD steps (the paper's lr 1e-3 SGD from ImageNet weights does not move a network
trained from scratch in 300 steps), batch 4 as the paper's ablations. What is compared is the direction of each
difference at equal steps. The SBD protocol is 'sbd-raw' (full resolution, radius-2 GT, 0.02 of the diagonal = 2.9 px):
the Cityscapes protocols evaluate at half resolution with 0.0035 of the diagonal, under a pixel at this size."""
import argparse, json, platform, subprocess, sys, time
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from boundaryseg.core import set_seed  # noqa: E402
from boundaryseg.data.block import seg_dataloaders  # noqa: E402
from boundaryseg.data.datasets import get_dataset  # noqa: E402
from boundaryseg.recipes import get_recipe  # noqa: E402
from boundaryseg.learner import seg_learner  # noqa: E402
from boundaryseg.inference import evaluate, save_model  # noqa: E402

# name -> (architecture, model options, loss-weight overrides); all at S = 8 unless said
VARIANTS = {
    'base': ('rpcnet', dict(grad_fusion=False, pcm=False), {'duality': 0}),  # Table 1, row 1: no duality, no ∇M, no PCM
    'duality': ('rpcnet', dict(grad_fusion=False, pcm=False), {}),           # + duality loss
    'gradm': ('rpcnet', dict(pcm=False), {}),                                  # + ∇M fusion
    'full': ('rpcnet', {}, {}),                                                 # + PCM {1,3,5,7}: the full model (Table 2, S = 8)
    's1_seg': ('rpcnet_seg', {}, {}),                                           # Table 2, S = 1, segmentation only
    's1_edge': ('rpcnet_edge', {}, {}),                                         # Table 2, S = 1, boundaries only
    's2': ('rpcnet', dict(steps=2), {}),
    's4': ('rpcnet', dict(steps=4), {}),
}
PAPER = {  # Cityscapes val, %: mIoU, MF-ODS, AP (Tables 1 and 2)
    'base': (78.14, 73.61, 72.81), 'duality': (79.58, 74.24, 73.57), 'gradm': (79.81, 74.45, 74.20), 'full': (80.43, 75.54, 75.14),
    's1_seg': (77.65, None, None), 's1_edge': (None, 72.62, 71.56), 's2': (78.77, 73.44, 72.53), 's4': (79.80, 74.56, 73.80),
}
# (better, worse, what the paper reports): the directions to check
DIRECTIONS = [('duality', 'base', 'Table 1: + duality loss raises mIoU (+1.44) and MF / AP (+0.63 / +0.76)'),
              ('gradm', 'duality', 'Table 1: + ∇M fusion (+0.23 mIoU, +0.21 / +0.63)'),
              ('full', 'gradm', 'Table 1: + PCM {1,3,5,7} (+0.62, +1.09 / +0.94)'),
              ('s2', 's1_seg', 'Table 2: joint S = 2 beats segmentation alone (78.77 vs 77.65 mIoU)'),
              ('s2', 's1_edge', 'Table 2: joint S = 2 beats boundaries alone (73.44 vs 72.62 MF)'),
              ('s4', 's2', 'Table 2: S = 4 beats S = 2 on both tasks'),
              ('full', 's4', 'Table 2: S = 8 beats S = 4 on both tasks')]


def data(a, seed):
    return seg_dataloaders('synthetic', root=a.root, size=a.crop, bs=a.bs, seed=seed, targets=('mask', 'inst', 'void'), scale=(1.0, 1.5),
                           n_train=a.n_train, n_val=a.n_val, image_size=a.image_size, device='cpu')


def recipe(a):
    return get_recipe('rpcnet_ablation', opt='adamw', lr=a.lr, wd=1e-2, crop=tuple(a.crop), bs=a.bs, epochs=a.epochs,
                      source='RPCNet Tables 1-2 on the synthetic data: AdamW + poly (the CPU recipe of the main job), equal for every variant')


def train(name, seed, a):
    "Train one variant with one seed; the learner and its training CPU seconds."
    arch, kw, weights = VARIANTS[name]
    set_seed(seed)
    dls = data(a, seed)
    rec = recipe(a).replace(loss_weights=weights)
    learn = seg_learner(dls, arch=arch, backbone=a.backbone, recipe=rec, checkpoint=None, path=Path(a.work)/f'{name}_{seed}',
                        width=a.width, metrics=[], **kw)
    t = time.process_time()
    with learn.no_bar(), learn.no_logging(): learn.fit(a.epochs)
    return learn, time.process_time() - t


def score(learn, a):
    res = evaluate(learn.model, get_dataset('synthetic', a.root, 'val'), learn.dls.c, tols=(3,), progress=False, flip=True,
                   edge_protocol='sbd-raw')
    out = {}
    if 'miou' in res: out.update(miou=float(res['miou']), bf3=float(res['bf'][0]))
    if 'edge' in res: out.update(mf_ods=float(res['edge']['mf_ods']), ap=float(res['edge']['map']))
    return out


NMS_PROTOCOL = 'sbd-thin'  # Test-NMS is scored against thin GT (STEAL, RPCNet Table 5): against the radius-2 GT of 'sbd-raw' it can only lose recall


def cli_eval(model, a, nms):
    "`boundaryseg eval` of a saved model, with and without Test-NMS under the same thin protocol; its metrics.json."
    out = Path(a.work)/('cli_eval_nms' if nms else 'cli_eval')
    cmd = [str(ROOT/'.venv'/'bin'/'boundaryseg'), 'eval', str(model), '--data', 'synthetic', '--root', str(a.root), '--flip',
           '--edge_protocol', NMS_PROTOCOL, '--out', str(out)] + (['--nms'] if nms else [])
    t = time.time()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    m = json.loads((out/'metrics.json').read_text())
    return dict(command=' '.join(['boundaryseg'] + cmd[1:]), seconds=round(time.time() - t, 1), miou=m['miou'],
                mf_ods=m['edge']['mf_ods'], ap=m['edge']['map'], protocol=m['edge']['protocol'],
                ods_class=m['edge']['ods_class'], ap_class=m['edge']['ap_class'])


def summarise(runs):
    out = {}
    for v in VARIANTS:
        rs = [r for r in runs if r['variant'] == v]
        if not rs: continue
        s = dict(n=len(rs))
        for k in ('miou', 'bf3', 'mf_ods', 'ap'):
            vals = [100 * r[k] for r in rs if k in r]
            if vals: s[k] = dict(mean=round(float(np.mean(vals)), 2), std=round(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0., 2))
        out[v] = s
    return out


def directions(summary, runs):
    rows = []
    for hi, lo, what in DIRECTIONS:
        if hi not in summary or lo not in summary: continue
        row = dict(better=hi, worse=lo, paper=what)
        for k in ('miou', 'mf_ods', 'ap'):
            if k in summary[hi] and k in summary[lo]:
                d = [100 * (r[k] - q[k]) for r in runs if r['variant'] == hi for q in runs if q['variant'] == lo and q['seed'] == r['seed']]
                row[k] = dict(delta=round(summary[hi][k]['mean'] - summary[lo][k]['mean'], 2), seeds_agree=int(sum(x > 0 for x in d)), n=len(d))
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--variants', nargs='*', default=list(VARIANTS))
    ap.add_argument('--seeds', type=int, nargs='*', default=[0, 1, 2])
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--bs', type=int, default=4)
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--crop', type=int, nargs=2, default=[64, 128])
    ap.add_argument('--image_size', type=int, nargs=2, default=[64, 128])
    ap.add_argument('--n_train', type=int, default=200)
    ap.add_argument('--n_val', type=int, default=24)
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--root', default=str(ROOT/'data'/'synthetic_64x128'))
    ap.add_argument('--work', default=str(ROOT/'runs'/'rpcnet_ablation'))
    ap.add_argument('--no_cli', action='store_true', help='skip the boundaryseg eval of the saved full model')
    ap.add_argument('--out', default=str(HERE/'results'/'rpcnet_ablation.json'))
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()).get('runs', []) if out.exists() else []  # resume an interrupted run
    runs = [r for r in done if r['variant'] in a.variants and r['seed'] in a.seeds]
    res = dict(setting={k: v for k, v in vars(a).items() if k not in ('out', 'work')}, recipe=repr(recipe(a)), paper=PAPER,
               machine=platform.processor() or platform.machine(), torch=torch.__version__, runs=runs)
    def save():
        res.update(summary=summarise(res['runs']), directions=directions(summarise(res['runs']), res['runs']))
        out.write_text(json.dumps(res, indent=1))
    for seed in a.seeds:
        for v in a.variants:
            if any(r['variant'] == v and r['seed'] == seed for r in res['runs']): continue
            learn, secs = train(v, seed, a)
            r = dict(variant=v, seed=seed, steps=a.epochs * len(learn.dls.train), train_cpu_s=round(secs, 1),
                     params=sum(p.numel() for p in learn.model.parameters()), **score(learn, a))
            print(json.dumps(r), flush=True)
            res['runs'].append(r)
            if v == 'full' and seed == a.seeds[0]: save_model(learn.model, Path(a.work)/'full_model.pth', meta=dict(data='synthetic'))
            save()
    if not a.no_cli and 'full' in a.variants and (Path(a.work)/'full_model.pth').exists():
        res['cli'] = [cli_eval(Path(a.work)/'full_model.pth', a, nms) for nms in (False, True)]
        print(json.dumps([{k: v for k, v in c.items() if not k.endswith('_class')} for c in res['cli']]), flush=True)
    save()
    print(json.dumps(res['summary'], indent=1))


if __name__ == '__main__':
    main()
