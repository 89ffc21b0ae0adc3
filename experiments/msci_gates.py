"""MSCI at initialisation, before any training: how many LSTM gates start saturated under each aggregation of Eq. 3-4
(the literal sums, means over a region's cells with summed neighbourhoods, and the scale-free default: means of both),
how large the context term is against the gate convolution's, and how large the backbone's gradient is against the
FCN baseline's on the same images (the same backbone weights: the backbone is built first from the same seed).

Setup of the MSCI ablation (experiments/msci_ablation.py): ResNet-18 from scratch, 32-channel intertwining, synthetic
128x256 scenes with SLIC at the paper's density, 19 classes. Writes experiments/results/msci_gates.json.

    .venv/bin/python experiments/msci_gates.py                  # 3 seeds x 4 images, about a CPU-minute
    .venv/bin/python experiments/msci_gates.py --device cuda
"""
import argparse, json, sys
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from boundaryseg.core import normalize  # noqa: E402
from boundaryseg.data.synthetic import synthetic_scene  # noqa: E402
from boundaryseg.data.superpixels import slic_superpixels  # noqa: E402
from boundaryseg.models.zoo import seg_model  # noqa: E402
from boundaryseg.models.msci import gate_stats  # noqa: E402

ARMS = {'sum_sum (literal Eq. 3-4)': dict(region_reduce='sum', neighbour_reduce='sum'),
        'mean_sum': dict(region_reduce='mean', neighbour_reduce='sum'),
        'mean_mean (default)': dict(region_reduce='mean', neighbour_reduce='mean')}


def backbone_grad(m, x, sp, y):
    "Norms of the CE loss's gradient over the backbone's deepest stage and over the whole backbone."
    m.zero_grad()
    out = m(x, *([sp] if m.inputs else []))['seg']
    F.cross_entropy(out, y, ignore_index=255).backward()
    last = m.backbone.feature_info[-1]['module'].replace('.', '_')
    norm = lambda ps: float(torch.stack([p.grad.norm() for p in ps if p.grad is not None]).norm())
    return norm(getattr(m.backbone.body, last).parameters()), norm(m.backbone.parameters())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--seeds', nargs='*', type=int, default=[0, 1, 2])
    ap.add_argument('--images', type=int, default=4)
    ap.add_argument('--image_size', type=int, nargs=2, default=[128, 256])
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--out', default=str(HERE / 'results' / 'msci_gates.json'))
    a = ap.parse_args()
    torch.set_flush_denormal(True)
    scenes = [synthetic_scene(tuple(a.image_size), seed=100 + i) for i in range(a.images)]
    x = normalize(np.stack([s[0] for s in scenes])).to(a.device)
    y = torch.from_numpy(np.stack([s[1] for s in scenes])).long().to(a.device)
    y[y >= 19] = 255
    sp = torch.from_numpy(np.stack([slic_superpixels(s[0]) for s in scenes])).to(a.device)
    res = {k: dict(sat=[], sat_up0=[], ctx_conv=[], grad_last_vs_fcn=[], grad_all_vs_fcn=[]) for k in ARMS}
    for seed in a.seeds:
        torch.manual_seed(seed)
        fcn = seg_model('msci_fcn', a.backbone, n_classes=19).to(a.device).train()
        g_fcn = backbone_grad(fcn, x, sp, y)
        for k, kw in ARMS.items():
            torch.manual_seed(seed)
            m = seg_model('msci', a.backbone, n_classes=19, width=a.width, **kw).to(a.device).train()
            st = gate_stats(m, x, sp)
            r = res[k]
            r['sat'].append(float(np.mean([s['sat'] for s in st])))
            r['sat_up0'].append(float(np.mean([s['sat'] for s in st if s['chain'] == 'up0'])))
            r['ctx_conv'].append(float(np.median([s['ctx_conv'] for s in st])))
            g = backbone_grad(m, x, sp, y)
            r['grad_last_vs_fcn'].append(g[0] / g_fcn[0])
            r['grad_all_vs_fcn'].append(g[1] / g_fcn[1])
    summary = {k: {s: dict(mean=float(np.mean(v)), std=float(np.std(v, ddof=1)) if len(v) > 1 else 0.) for s, v in r.items()} for k, r in res.items()}
    cfg = dict(vars(a), torch=torch.__version__)
    cfg.pop('out')
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(config=cfg, per_seed=res, summary=summary), indent=1))
    print(f"{'Eq. 3-4 as':<28} {'saturated':>10} {'up0':>8} {'ctx/conv':>9} {'grad vs FCN: last stage':>24} {'all':>6}")
    for k, s in summary.items():
        print(f"{k:<28} {s['sat']['mean']:>10.1%} {s['sat_up0']['mean']:>8.1%} {s['ctx_conv']['mean']:>8.1f}x {s['grad_last_vs_fcn']['mean']:>23.2f}x {s['grad_all_vs_fcn']['mean']:>5.2f}x")


if __name__ == '__main__':
    main()
