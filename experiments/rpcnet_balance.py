"""RPCNet's loss balance (issue 19, defects 1 and 3): for each loss term (cross-entropy `seg`, duality, boundary `edge`)
its weighted value, the norm of its gradient at the output logits and at the backbone's deepest stage, and the cosine of
that gradient with the cross-entropy's, at initialisation and after N training steps, for the library's earlier loss
defaults ('before') and the repaired ones ('after'), plus the half-way duality variants that the choice was made
from (and 'grad_boundary', the first repair's per-image normalisation, which the monitor later showed spiking). Plain `torch.autograd.grad` on one fixed batch, at fixed steps; the library's loss-balance monitor
(`monitor.LossBalance`, in every `seg_learner`) measures the same quantities during any training run.

    .venv/bin/python experiments/rpcnet_balance.py                       # the committed run (CPU, about 6 CPU-minutes)
    .venv/bin/python experiments/rpcnet_balance.py --plot experiments/results/rpcnet_balance.png   # its figure, from the JSON

Setting: RPCNet S = 2 (the issue's measurement), ResNet-18 from scratch, C = 32, 19 classes, synthetic street scenes at
64x128 (a fixed pool of frames, no augmentation), batch 4, AdamW lr 2e-3, wd 1e-2 (the ablation's), radius-2 boundary
targets. Gradients at the logits are taken at the full-resolution outputs (`seg` for the cross-entropy and the duality
loss, `edge` for the boundary loss); at the backbone, at the output of its deepest stage (ResNet `layer4`, RPCNet's
level 0), which every term reaches."""
import argparse, json, platform, sys, time
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from boundaryseg.core import set_seed, normalize  # noqa: E402
from boundaryseg.data.labels import CITYSCAPES  # noqa: E402
from boundaryseg.data.synthetic import synthetic_scene  # noqa: E402
from boundaryseg.losses import seg_loss  # noqa: E402
from boundaryseg.models.zoo import seg_model  # noqa: E402
import boundaryseg.rpcnet_losses  # noqa: E402,F401  (registers the loss kinds)

# name -> loss options (the recipe's `loss_kw`); 'before' is the library's defaults before the repair
CONFIGS = {
    'before': dict(duality_target='band', duality_norm='entries', edge_norm='none'),
    'band_boundary': dict(duality_target='band', duality_norm='boundary'),
    'grad_entries': dict(duality_target='grad', duality_norm='entries'),
    'grad_boundary': dict(duality_target='grad', duality_norm='boundary'),  # the first repair: each image over its own mass
    'after': dict(duality_target='grad', duality_norm='batch'),  # the default: each image over the batch's mean mass
}
BASE_KW = dict(radius=2, duality_radius=1)  # the rpcnet recipe's targets


def scenes(n, size, seed):
    "A fixed pool of synthetic frames: normalised images, train-id masks, instance and void maps."
    out = [synthetic_scene(size, seed=(seed, 7, i)) for i in range(n)]
    x = normalize(np.stack([o[0] for o in out]))
    mask = torch.from_numpy(np.stack([CITYSCAPES.encode(o[1]) for o in out]).astype(np.int64))
    inst = torch.from_numpy(np.stack([o[2] for o in out]).astype(np.int64))
    void = torch.from_numpy(np.stack([CITYSCAPES.void_mask(o[1]) for o in out]))
    return x, mask, inst, void


def measure(model, lf, batch):
    "Per term: weighted value, gradient norms at its logits and at the deepest backbone stage, cosines with the CE's gradients."
    x, mask, inst, void = batch
    model.train()
    feats = model.backbone(x)
    deep = feats[-1]
    out = model.decode(feats, x.shape[-2:])
    g = {}
    for name in lf.names:
        keys = lf.keys[name]
        v = lf.weights[name] * lf.fn(name)(*[out[k] for k in keys], mask, inst=inst, void=void)
        at = [out[k] for k in keys] + [deep]
        gr = torch.autograd.grad(v, at, retain_graph=True, allow_unused=True)
        g[name] = dict(value=v.item(), logits=torch.cat([t.flatten() for t in gr[:-1] if t is not None]), deep=gr[-1].flatten(),
                       seg=gr[keys.index('seg')].flatten() if 'seg' in keys else None)
    ce = g['seg']
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b, 0)) if a is not None and a.norm() > 0 and b.norm() > 0 else None
    rows = {}
    for name, r in g.items():
        rows[name] = dict(value=r['value'], grad_logits=r['logits'].norm().item(), grad_deep=r['deep'].norm().item(),
                          deep_ratio=r['deep'].norm().item() / ce['deep'].norm().item(), logits_ratio=r['logits'].norm().item() / ce['logits'].norm().item(),
                          cos_deep=cos(r['deep'], ce['deep']), cos_seg_logits=cos(r['seg'], ce['seg']) if name != 'seg' else None)
    return rows


def run(config, seed, a):
    "Train one model with one loss configuration, measuring at step 0 and every `--every` steps."
    set_seed(seed)
    pool = scenes(a.n_train, tuple(a.size), seed)
    pool = tuple(t.to(a.device) for t in pool)
    fixed = tuple(t[:a.bs] for t in pool)
    model = seg_model('rpcnet', a.backbone, n_classes=19, width=a.width, steps=a.S).to(a.device)
    lf = seg_loss(model.spec, 19, **BASE_KW, **CONFIGS[config]).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-2)
    points, t0, g = [dict(step=0, terms=measure(model, lf, fixed))], time.process_time(), torch.Generator().manual_seed(seed)
    for step in range(1, a.steps + 1):
        idx = torch.randperm(a.n_train, generator=g)[:a.bs].to(a.device)
        x, mask, inst, void = (t[idx] for t in pool)
        model.train()
        loss = lf(model(x), mask, inst, void)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % a.every == 0 or step == a.steps: points.append(dict(step=step, terms=measure(model, lf, fixed)))
    return dict(config=config, seed=seed, points=points, train_cpu_s=round(time.process_time() - t0, 1))


def plot(res, path):
    "Before / after: each term's weighted value, its backbone gradient relative to the CE's, and their cosine, at init and after N steps."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cfgs = [c for c in ('before', 'after') if any(r['config'] == c for r in res['runs'])]
    fig, axs = plt.subplots(1, 4, figsize=(17, 3.6))
    panels = [('value', 'weighted value', 'log'), ('logits_ratio', '|grad| at logits / CE', 'log'), ('deep_ratio', '|grad| at backbone / CE', 'log'),
              ('cos_deep', 'cos with CE at backbone', 'linear')]
    colors = {'before': 'tab:red', 'after': 'tab:green'}
    for ax, (key, title, scale) in zip(axs, panels):
        for ci, c in enumerate(cfgs):
            runs = [r for r in res['runs'] if r['config'] == c]
            steps = [p['step'] for p in runs[0]['points']]
            for ti, (term, ls) in enumerate((('seg', ':'), ('duality', '-'), ('edge', '--'))):
                if key != 'value' and term == 'seg': continue
                vals = np.array([[p['terms'][term][key] for p in r['points']] for r in runs], dtype=float)
                ax.plot(steps, vals.mean(0), ls, color=colors[c], label=f'{c}: {term}', marker='o', ms=3)
                if len(runs) > 1: ax.fill_between(steps, vals.min(0), vals.max(0), color=colors[c], alpha=.15)
        if key in ('deep_ratio', 'logits_ratio'):
            for y in (0.02, 10): ax.axhline(y, color='grey', lw=.8)
        if key == 'cos_deep': ax.axhline(0, color='grey', lw=.8)
        ax.set_yscale(scale); ax.set_title(title); ax.set_xlabel('training step')
    axs[0].legend(fontsize=7, ncol=2)
    s = res['setting']
    fig.suptitle(f"RPCNet S={s['S']} loss balance, synthetic {s['size'][0]}x{s['size'][1]}, bs {s['bs']}, seeds {s['seeds']} "
                 f"(red: earlier defaults; green: repaired; grey lines: 2% and 10x of the CE)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f'wrote {path}')


def summary(res):
    "Mean over seeds per config, step and term."
    out = {}
    for c in CONFIGS:
        runs = [r for r in res['runs'] if r['config'] == c]
        if not runs: continue
        out[c] = {}
        for i, p in enumerate(runs[0]['points']):
            out[c][p['step']] = {t: {k: (round(float(np.mean([r['points'][i]['terms'][t][k] for r in runs])), 4)
                                     if p['terms'][t][k] is not None else None) for k in p['terms'][t]} for t in p['terms']}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--steps', type=int, default=100, help='training steps after the measurement at initialisation')
    ap.add_argument('--every', type=int, default=25, help='measure every this many steps')
    ap.add_argument('--seeds', type=int, nargs='*', default=[0, 1])
    ap.add_argument('--configs', nargs='*', default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument('--size', type=int, nargs=2, default=[64, 128])
    ap.add_argument('--bs', type=int, default=4)
    ap.add_argument('--n_train', type=int, default=32)
    ap.add_argument('--S', type=int, default=2, help='RPCNet steps')
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--out', default=str(HERE/'results'/'rpcnet_balance.json'))
    ap.add_argument('--plot', default=None, help='draw the figure of --out to this path and exit')
    a = ap.parse_args()
    if a.plot: return plot(json.loads(Path(a.out).read_text()), a.plot)
    torch.set_num_threads(1)
    res = dict(setting={k: v for k, v in vars(a).items() if k not in ('out', 'plot')}, configs={c: {**BASE_KW, **CONFIGS[c]} for c in a.configs},
               machine=platform.processor() or platform.machine(), torch=torch.__version__, runs=[])
    for seed in a.seeds:
        for c in a.configs:
            r = run(c, seed, a)
            res['runs'].append(r)
            last = r['points'][-1]['terms']
            print(json.dumps(dict(config=c, seed=seed, cpu_s=r['train_cpu_s'], **{t: {k: round(v, 3) for k, v in d.items() if v is not None and k in
                                  ('value', 'deep_ratio', 'cos_deep')} for t, d in last.items()})), flush=True)
    res['summary'] = summary(res)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f'wrote {a.out}')


if __name__ == '__main__':
    main()
