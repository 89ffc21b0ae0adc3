"""RPCNet's "PCM −" baseline (Table 1, rows 1-3; issue 19, defect 2): can it fit a fixed batch? Three heads on Table 1's
base row (no duality loss, no ∇M fusion), identical except for the context of Eq. 2: the parameter-free reading
(`no_pcm='none'`, the library's earlier "PCM −"), the learnable one (`no_pcm='conv1'`, plain 1x1 convolutions, the
default), and the full PCM {1,3,5,7} for reference. Each fits the same 4 synthetic frames for N steps; the script
reports the segmentation loss and the mIoU on that batch (classes present in it).

    .venv/bin/python experiments/rpcnet_pcm_minus.py            # the committed run (about 3 CPU-minutes)

Setting: RPCNet S = 8, ResNet-18 from scratch, C = 32, 64x128 frames, AdamW lr 2e-3 (constant), radius-2 boundary
targets, the repaired loss defaults."""
import argparse, json, sys, time
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from boundaryseg.core import set_seed  # noqa: E402
from boundaryseg.losses import seg_loss  # noqa: E402
from boundaryseg.models.zoo import seg_model  # noqa: E402
from rpcnet_balance import scenes  # noqa: E402

ARMS = {'pcm- none': dict(pcm=False, no_pcm='none'), 'pcm- conv1': dict(pcm=False, no_pcm='conv1'), 'pcm {1,3,5,7}': {}}


def miou(logits, mask, K=19):
    "Mean IoU over the classes present in the batch's labels."
    p, ok = logits.argmax(1), mask != 255
    ious = [((p == c) & (mask == c) & ok).sum().item() / (((p == c) & ok) | (mask == c)).sum().item() for c in range(K) if (mask == c).any()]
    return float(np.mean(ious))


def run(arm, seed, a):
    set_seed(seed)
    x, mask, inst, void = (t.to(a.device) for t in scenes(a.bs, tuple(a.size), seed))
    m = seg_model('rpcnet', a.backbone, n_classes=19, width=a.width, steps=8, grad_fusion=False, **ARMS[arm]).to(a.device)
    lf = seg_loss(m.spec, 19, weights={'duality': 0}, radius=2).to(a.device)
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=1e-2)
    hist, t0 = [], time.process_time()
    for step in range(a.steps + 1):
        m.train()
        out = m(x)
        loss = lf(out, mask, inst, void)
        if step % a.every == 0: hist.append(dict(step=step, seg_ce=round(lf.last['seg'].item(), 4), miou=round(miou(out['seg'].detach(), mask), 4)))
        if step == a.steps: break
        opt.zero_grad(); loss.backward(); opt.step()
    refine = sum(p.numel() for st in m.head.pcm for p in st.ctx.parameters())
    return dict(arm=arm, seed=seed, refine_params=refine, cpu_s=round(time.process_time() - t0, 1), history=hist)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--steps', type=int, default=120)
    ap.add_argument('--every', type=int, default=20)
    ap.add_argument('--seeds', type=int, nargs='*', default=[0, 1])
    ap.add_argument('--size', type=int, nargs=2, default=[64, 128])
    ap.add_argument('--bs', type=int, default=4)
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--out', default=str(HERE/'results'/'rpcnet_pcm_minus.json'))
    a = ap.parse_args()
    torch.set_num_threads(1)
    res = dict(setting={k: v for k, v in vars(a).items() if k != 'out'}, runs=[])
    for seed in a.seeds:
        for arm in ARMS:
            r = run(arm, seed, a)
            res['runs'].append(r)
            print(json.dumps({k: v for k, v in r.items() if k != 'history'} | dict(last=r['history'][-1])), flush=True)
    res['summary'] = {arm: {k: round(float(np.mean([r['history'][-1][k] for r in res['runs'] if r['arm'] == arm])), 4) for k in ('seg_ce', 'miou')}
                      for arm in ARMS}
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res['summary'], indent=1))


if __name__ == '__main__':
    main()
