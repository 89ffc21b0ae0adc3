"""How well Seamless' anchors cover the synthetic scenes' objects, before and after the repair of issue 19 (5):
each thing box's best IoU with a valid anchor (inside its image, as the matcher requires), the share of boxes whose
best anchor reaches the matcher's positive threshold 0.7 (and 0.5), the median object size (sqrt of the box area), and
the valid anchors of each FPN level P2..P6, over the first --batches training batches of each configuration.

- before: the old bench (bench/seamless_synthetic.py until issue 19): `seg_dataloaders` (128x256 crops of 128x256
  scenes, no rescaling), anchors of scale 2 (8..128 px on P2..P6), ratios 1, 1/2, 2;
- after: `panoptic_dataloaders` (the paper's pipeline: short side floor(256 t), t ~ U[0.5, 2], flip, no crop) on
  256x512 scenes, anchors of scale 4 (16..256 px), ratios 1/3, 1/2, 1, 2, 3 (the things are mostly upright).

    .venv/bin/python experiments/seamless_anchors.py          # writes experiments/results/seamless_anchors.json (~1 CPU-minute)
"""
import argparse, json, sys
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / 'bench'))
from boundaryseg.data.block import seg_dataloaders  # noqa: E402
from boundaryseg.panoptic.data import panoptic_dataloaders, instance_targets  # noqa: E402
from boundaryseg.panoptic.model import anchor_coverage  # noqa: E402
from seamless_synthetic import SYNTHETIC  # noqa: E402  the configuration of the synthetic Seamless run

STRIDES = (4, 8, 16, 32, 64)  # P2..P6 (Cityscapes' one extra level)
CONFIGS = {
    'before': dict(loader='seg', image_size=(128, 256), anchor_scale=2., ratios=(1., 0.5, 2.)),
    'after': dict(loader='panoptic', **SYNTHETIC),
}


def loaders(c, root, seed=0, bs=4, n_train=40, device='cpu'):
    kw = dict(n_train=n_train, n_val=4, image_size=c['image_size'])
    if c['loader'] == 'seg':
        return seg_dataloaders('synthetic', root, size=c['image_size'], bs=bs, targets=('mask', 'inst'), seed=seed, device=device, **kw)
    return panoptic_dataloaders('synthetic', root, short=c['short'], scale=c['scale'], max_long=c['max_long'], bs=bs, seed=seed, device=device, **kw)


def measure(c, root, batches):
    dls = loaders(c, root)
    best, level, valid, size = [], [], torch.zeros(len(STRIDES), dtype=torch.long), []
    for _, b in zip(range(batches), dls.train):
        t = instance_targets(b[-2].as_subclass(torch.Tensor), b[-1].as_subclass(torch.Tensor), dls.spec.thing)
        cov = anchor_coverage(t, STRIDES, c['anchor_scale'], c['ratios'])
        best.append(cov['best_iou']); level.append(cov['level']); valid += cov['valid']
        size.append(((t.boxes[:, 2] - t.boxes[:, 0]) * (t.boxes[:, 3] - t.boxes[:, 1])).sqrt())
    best, level, size = torch.cat(best), torch.cat(level), torch.cat(size)
    return dict(boxes=len(best), median_sqrt_area_px=round(float(size.median()), 1), iou_ge_07=round(float((best >= 0.7).float().mean()), 3),
                iou_ge_05=round(float((best >= 0.5).float().mean()), 3), valid_anchors_per_level=dict(zip([f'P{i + 2}' for i in range(5)], valid.tolist())),
                best_level_share=dict(zip([f'P{i + 2}' for i in range(5)], [round(float((level == i).float().mean()), 3) for i in range(5)])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--batches', type=int, default=10)
    ap.add_argument('--work', default='runs/seamless_anchors')
    ap.add_argument('--out', default=str(HERE / 'results' / 'seamless_anchors.json'))
    a = ap.parse_args()
    torch.manual_seed(0)
    res = {k: dict(config={n: list(v) if isinstance(v, tuple) else v for n, v in c.items()},
                   **measure(c, Path(a.work) / f"synthetic_{c['image_size'][0]}", a.batches)) for k, c in CONFIGS.items()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    for k, r in res.items():
        print(f"{k:<7} boxes {r['boxes']:4d}  median sqrt(area) {r['median_sqrt_area_px']:5.1f} px  best IoU >= 0.7: {r['iou_ge_07']:.1%}  "
              f">= 0.5: {r['iou_ge_05']:.1%}  valid anchors {r['valid_anchors_per_level']}")


if __name__ == '__main__':
    main()
