"""RPCNet's ablations (Tables 1 and 2) on the synthetic dataset: duality loss, ∇M fusion, the pyramid context module and
the number of steps S. Each pair of arms that the paper compares differs in one factor only: Table 1's rows add one
part at a time to a baseline whose refinement is learnable (PCM− = plain 1x1 convolutions in place of the patch
pyramid, `no_pcm='conv1'`), and Table 2's rows change S alone. Every arm is trained from scratch for the same number of
steps with the same data, recipe and seeds. It is scored on the validation frames with flip (mIoU; MF-ODS and AP of the
boundaries), then summarised as mean and std over the seeds with paired per-seed gains. With --cli, the full model of
the first seed is saved and scored through `boundaryseg eval`, without and with Test-NMS.

    .venv/bin/python experiments/rpcnet_ablation.py --steps 3000 --seeds 0 1 2          # the full run (not run yet: see below)
    .venv/bin/python experiments/rpcnet_ablation.py --steps 4 --seeds 0 --variants base full --out /tmp/smoke.json   # a smoke run

Table 1's first direction (+ duality loss) from ImageNet weights, one process per arm, then joined (what was run):

    for v in base duality; do .venv/bin/python experiments/rpcnet_ablation.py --steps 300 --seeds 0 1 2 --variants $v \
        --backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0 --out experiments/results/rpcnet_duality_$v.json & done; wait
    .venv/bin/python experiments/rpcnet_ablation.py --steps 300 --backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0 \
        --merge experiments/results/rpcnet_duality_base.json experiments/results/rpcnet_duality_duality.json --out experiments/results/rpcnet_duality.json

Table 1's ∇M and PCM rows and Table 2's S = 1 (each task alone), 2, 4, 8 in the same setting, one process per arm
(two at a time), then the eight arms joined (`nbs/tutorials/rpcnet.ipynb` reads rpcnet_tables.json):

    for v in full s4 s2 s1_seg s1_edge; do .venv/bin/python experiments/rpcnet_ablation.py --steps 300 --seeds 0 1 2 --variants $v \
        --backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0 --out experiments/results/rpcnet_arm_$v.json; done
    .venv/bin/python experiments/rpcnet_ablation.py --steps 300 --backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0 \
        --merge experiments/results/rpcnet_duality_base.json experiments/results/rpcnet_duality_duality.json \
        experiments/results/rpcnet_table1_gradm.json experiments/results/rpcnet_arm_{full,s4,s2,s1_seg,s1_edge}.json \
        --out experiments/results/rpcnet_tables.json

Testbed. The boundary density is close to Cityscapes', where the earlier 64x128 testbed (radius-2 targets) was not:
synthetic frames at 256x512 with radius-1 boundary targets give 0.8% boundary entries (measured by the script and
stored as `testbed.boundary_density`), against 0.29% on a full-resolution Cityscapes frame at radius 2 and 4.3% on
the old testbed. The boundary term is normalised to that density (`rpcnet_losses`, `edge_density`), so λ2 = 1000 keeps
its Cityscapes meaning. The frames are cropped at their full size after a random 1.0-1.5 zoom. Boundaries are scored
with the Cityscapes "thin" protocol (half resolution, 0.0035 of the diagonal, instance-sensitive thinned GT).

Not the paper's setting: by default no ImageNet pretraining (the committed runs start from ImageNet EfficientNet-Lite0),
a small backbone with 32-channel levels instead of a ResNet-101 with 256, AdamW (lr 2e-3, poly) instead of SGD lr 1e-3 (which barely moves a network trained from scratch in a CPU budget), batch 4
as the paper's ablations. What is compared is the direction of each difference at equal steps. Cost: the script
records CPU seconds per training step for each arm (`runs[].s_per_step`)."""
import argparse, json, math, platform, subprocess, sys, time
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
from boundaryseg.data.boundaries import boundary_targets  # noqa: E402
from boundaryseg.models.weights import parse_pretrained  # noqa: E402

# name -> (architecture, model options, loss-weight overrides); all at S = 8 unless said. Each arm of Table 1 adds one part to the one above.
PCM_MINUS = dict(pcm=False, no_pcm='conv1')  # the learnable "PCM -": plain 1x1 convs in place of the patch pyramid (the {1} row's parameters)
VARIANTS = {
    'base': ('rpcnet', dict(grad_fusion=False, **PCM_MINUS), {'duality': 0}),  # Table 1, row 1: no duality, no ∇M, PCM -
    'duality': ('rpcnet', dict(grad_fusion=False, **PCM_MINUS), {}),           # + duality loss
    'gradm': ('rpcnet', dict(PCM_MINUS), {}),                                    # + ∇M fusion
    'full': ('rpcnet', {}, {}),                                                   # + PCM {1,3,5,7}: the full model (Table 2, S = 8)
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


def n_train(a):
    "Training frames: `--n_train`, fewer when the run is shorter than one pass (a smoke run need not draw 200 frames)."
    return max(a.bs, min(a.n_train, a.steps * a.bs))


def data(a, seed):
    return seg_dataloaders('synthetic', root=a.root, size=a.crop, bs=a.bs, seed=seed, targets=('mask', 'inst', 'void'), scale=(1.0, 1.5),
                           n_train=n_train(a), n_val=a.n_val, image_size=a.image_size, device=a.device)


def epochs(a):
    "Epochs of `n_train(a) // bs` steps that reach `--steps` (rounded up to whole epochs: the recorded `steps` is exact)."
    return math.ceil(a.steps / (n_train(a) // a.bs))


def recipe(a):
    rec = get_recipe('rpcnet_ablation')
    return rec.replace(opt='adamw', lr=a.lr, wd=1e-2, crop=tuple(a.crop), bs=a.bs, epochs=epochs(a), loss_kw={**rec.loss_kw, 'radius': a.radius},
                       source='RPCNet Tables 1-2 on the synthetic data: AdamW + poly (the CPU recipe of the main job), equal for every variant')


def testbed_density(a):
    "Share of boundary entries (K·H·W) of the training targets at the testbed's radius, over the first 16 training frames."
    ds = get_dataset('synthetic', a.root, 'train', n_train=n_train(a), n_val=a.n_val, image_size=a.image_size)
    d = []
    for i in range(min(16, len(ds))):
        it = ds[i]
        m, inst = torch.as_tensor(np.asarray(it['mask']).astype(np.int64))[None], torch.as_tensor(np.asarray(it['inst']).astype(np.int64))[None]
        void = torch.as_tensor(np.asarray(it['void']))[None].bool() if 'void' in it else None
        d.append(boundary_targets(m, 19, inst, void, a.radius).float().mean().item())
    return round(float(np.mean(d)), 5)


def train(name, seed, a):
    "Train one variant with one seed; the learner, its training CPU seconds and steps."
    arch, kw, weights = VARIANTS[name]
    set_seed(seed)
    dls = data(a, seed)
    rec = recipe(a).replace(loss_weights=weights)
    learn = seg_learner(dls, arch=arch, backbone=a.backbone, recipe=rec, checkpoint=None, path=Path(a.work)/f'{name}_{seed}',
                        width=a.width, metrics=[], pretrained=parse_pretrained(a.pretrained), **kw)
    t = time.process_time()
    with learn.no_bar(), learn.no_logging(): learn.fit(rec.epochs)
    return learn, time.process_time() - t, rec.epochs * len(dls.train)


def score(learn, a):
    res = evaluate(learn.model, get_dataset('synthetic', a.root, 'val'), learn.dls.c, tols=(3,), progress=False, flip=True,
                   edge_protocol=a.protocol)
    out = {}
    if 'miou' in res: out.update(miou=float(res['miou']), bf3=float(res['bf'][0]))
    if 'edge' in res: out.update(mf_ods=float(res['edge']['mf_ods']), ap=float(res['edge']['map']))
    return out


def cli_eval(model, a, nms):
    "`boundaryseg eval` of a saved model; its metrics.json."
    out = Path(a.work)/('cli_eval_nms' if nms else 'cli_eval')
    cmd = [str(ROOT/'.venv'/'bin'/'boundaryseg'), 'eval', str(model), '--data', 'synthetic', '--root', str(a.root), '--flip',
           '--edge_protocol', a.protocol, '--out', str(out)] + (['--nms'] if nms else [])
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
        s = dict(n=len(rs), s_per_step=round(float(np.mean([r['s_per_step'] for r in rs])), 3))
        for k in ('miou', 'bf3', 'mf_ods', 'ap'):
            vals = [100 * r[k] for r in rs if k in r]
            if vals: s[k] = dict(mean=round(float(np.mean(vals)), 2), std=round(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0., 2))
        out[v] = s
    return out


def directions(summary, runs):
    "Each comparison of the paper: mean gain, paired per-seed gains (mean ± std) and how many seeds agree with the paper."
    rows = []
    for hi, lo, what in DIRECTIONS:
        if hi not in summary or lo not in summary: continue
        row = dict(better=hi, worse=lo, paper=what)
        for k in ('miou', 'mf_ods', 'ap'):
            if k in summary[hi] and k in summary[lo]:
                d = [100 * (r[k] - q[k]) for r in runs if r['variant'] == hi for q in runs if q['variant'] == lo and q['seed'] == r['seed']]
                row[k] = dict(delta=round(summary[hi][k]['mean'] - summary[lo][k]['mean'], 2), paired=[round(x, 2) for x in d],
                              paired_std=round(float(np.std(d, ddof=1)), 2) if len(d) > 1 else None, seeds_agree=int(sum(x > 0 for x in d)), n=len(d))
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--steps', type=int, default=3000, help='training steps per arm (rounded up to whole epochs of n_train/bs steps)')
    ap.add_argument('--variants', nargs='*', default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument('--seeds', type=int, nargs='*', default=[0, 1, 2])
    ap.add_argument('--bs', type=int, default=4)
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--image_size', type=int, nargs=2, default=[256, 512])
    ap.add_argument('--crop', type=int, nargs=2, default=[256, 512])
    ap.add_argument('--radius', type=float, default=1, help='boundary-target radius of the edge loss (Cityscapes-like density at 256x512: 1)')
    ap.add_argument('--protocol', default='cityscapes-thin', help='SBD protocol of the boundary scores')
    ap.add_argument('--n_train', type=int, default=200)
    ap.add_argument('--n_val', type=int, default=24)
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--pretrained', default='none', help="backbone weights: none, timm, a file, or a registered source (e.g. efficientnet-lite0 with --backbone tf_efficientnet_lite0)")
    ap.add_argument('--root', default=None, help='synthetic data folder; default data/synthetic_<H>x<W>_<n_train>_<n_val>')
    ap.add_argument('--work', default=str(ROOT/'runs'/'rpcnet_ablation'))
    ap.add_argument('--cli', action='store_true', help='also save the full model of the first seed and score it with boundaryseg eval (+ --nms)')
    ap.add_argument('--out', default=str(HERE/'results'/'rpcnet_ablation.json'))
    ap.add_argument('--merge', nargs='*', help='JSON files of runs of this setting (e.g. one process per variant) to join into --out, then exit')
    a = ap.parse_args()
    a.root = a.root or str(ROOT/'data'/f'synthetic_{a.image_size[0]}x{a.image_size[1]}_{n_train(a)}_{a.n_val}')
    torch.set_num_threads(1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()).get('runs', []) if out.exists() else []  # resume an interrupted run of the same setting
    setting = {k: v for k, v in vars(a).items() if k not in ('out', 'work', 'root', 'cli', 'merge')}
    same = lambda st: {k: v for k, v in st.items() if k not in ('variants', 'seeds')}
    if a.merge:
        parts = [json.loads(Path(f).read_text()) for f in a.merge]
        for f, p in zip(a.merge, parts):
            if same(p['setting']) != same(setting): raise SystemExit(f"{f} holds runs of another setting: {same(p['setting'])} (this: {same(setting)})")
        runs = [r for p in parts for r in p['runs']]
        res = dict(setting=dict(setting, variants=sorted({r['variant'] for r in runs}, key=list(VARIANTS).index), seeds=sorted({r['seed'] for r in runs})),
                   recipe=parts[0]['recipe'], paper=PAPER, machine=parts[0]['machine'], torch=parts[0]['torch'], testbed=parts[0].get('testbed'),
                   runs=runs, merged_from=[str(f) for f in a.merge])
        res.update(summary=summarise(runs), directions=directions(summarise(runs), runs))
        out.write_text(json.dumps(res, indent=1))
        return print(json.dumps(res['directions'], indent=1))
    if done and same(json.loads(out.read_text()).get('setting', {})) != same(setting):
        raise SystemExit(f"{out} holds runs of another setting (steps, testbed, ...): pass another --out")
    runs = [r for r in done if r['variant'] in a.variants and r['seed'] in a.seeds]
    res = dict(setting=setting, recipe=repr(recipe(a)), paper=PAPER, machine=platform.processor() or platform.machine(), torch=torch.__version__,
               runs=runs)
    def save():
        res.update(summary=summarise(res['runs']), directions=directions(summarise(res['runs']), res['runs']))
        out.write_text(json.dumps(res, indent=1))
    for seed in a.seeds:
        for v in a.variants:
            if any(r['variant'] == v and r['seed'] == seed for r in res['runs']): continue
            learn, secs, steps = train(v, seed, a)
            if 'testbed' not in res: res['testbed'] = dict(boundary_density=testbed_density(a), n_train=n_train(a), epochs=epochs(a))
            r = dict(variant=v, seed=seed, steps=steps, train_cpu_s=round(secs, 1), s_per_step=round(secs / steps, 3),
                     params=sum(p.numel() for p in learn.model.parameters()), **score(learn, a))
            lb = getattr(learn, 'loss_balance', None)  # the learner's loss-balance monitor (every 50 steps by default): each term's rows
            if lb is not None and lb.rows: r['balance'] = [{k: (round(x, 6) if isinstance(x, float) else x) for k, x in row.items()} for row in lb.rows]
            print(json.dumps({k: x for k, x in r.items() if k != 'balance'}), flush=True)
            res['runs'].append(r)
            if a.cli and v == 'full' and seed == a.seeds[0]: save_model(learn.model, Path(a.work)/'full_model.pth', meta=dict(data='synthetic'))
            save()
    if a.cli and 'full' in a.variants and (Path(a.work)/'full_model.pth').exists():
        res['cli'] = [cli_eval(Path(a.work)/'full_model.pth', a, nms) for nms in (False, True)]
        print(json.dumps([{k: v for k, v in c.items() if not k.endswith('_class')} for c in res['cli']]), flush=True)
    save()
    print(json.dumps(res['summary'], indent=1))


if __name__ == '__main__':
    main()
