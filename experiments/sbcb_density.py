"""Boundary density of SBCB's testbed and the positive weight it gives the multi-label edge loss, before and after the
rebuild of issue 19 (6), against a Cityscapes-like reference; and the same for the main job's crops (`main` recipe) at
SBCB's radius 2 and at its recipe's radius.

For each setting, over the first --batches training batches of `seg_dataloaders('synthetic', targets='auto')` (the
experiments' loader: random scale, crop, flip): P/HW, the boundary pixels summed over classes per image pixel (what
the loss's weight reads), the share of pixels on any boundary, the per-image weight clamp(N/P, 1, HW) (median), and
the share of images whose weight clamps to 1 (the loss is then an unbalanced BCE). The Cityscapes-like reference: the
two full-resolution Cityscapes label maps of the fixtures (HRNet-OCR predictions, 2048x1024; predictions are
smoother than ground truth, so a lower bound on the density), three 512x1024 crops each (SBCB's training crop),
radius 2 (SBCB's), no instances.

    .venv/bin/python experiments/sbcb_density.py      # writes experiments/results/sbcb_density.json (~1 CPU-minute)
"""
import argparse, json, sys
from pathlib import Path
import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from boundaryseg.core import fixtures_path  # noqa: E402
from boundaryseg.data.block import seg_dataloaders  # noqa: E402
from boundaryseg.data.boundaries import boundary_targets  # noqa: E402
from boundaryseg.data.labels import CITYSCAPES  # noqa: E402
from boundaryseg.boundary_losses import edge_pos_weight  # noqa: E402
from sbcb_experiments import TESTBED  # noqa: E402  the rebuilt testbed

from boundaryseg.recipes import get_recipe  # noqa: E402

MAIN = get_recipe('main')  # the main job's recipe (`boundaryseg main`)
SETTINGS = {  # name -> synthetic scene size, training crop, boundary radius
    'before': dict(image_size=(128, 256), crop=(64, 128), radius=2),
    'after': TESTBED,
    # the main job (`boundaryseg main`: 256x512 scenes, the `main` recipe's crop) with SBCB's radius 2, and with its recipe's
    'main_job_radius2': dict(image_size=(256, 512), crop=tuple(MAIN.crop), radius=2),
    'main_job': dict(image_size=(256, 512), crop=tuple(MAIN.crop), radius=MAIN.loss_kw['radius']),
}


def density(y):
    "Statistics of (B,K,H,W) boundary targets."
    y = y.float()
    pw = edge_pos_weight(y)
    return dict(images=len(y), pos_per_pixel=round(float(y.flatten(1).mean(1).mean() * y.shape[1]), 4), any_boundary=round(float(y.amax(1).mean()), 4),
                pos_weight_median=round(float(pw.median()), 2), clamped=round(float((pw == 1).float().mean()), 3))


def cityscapes_like():
    maps = sorted((fixtures_path() / 'cityscapes_fullres_predictions').rglob('*_pred_labelIds.png'))
    crops = [torch.from_numpy(CITYSCAPES.encode(np.array(Image.open(p))).astype(np.int64))[256:768, x:x + 1024] for p in maps for x in (0, 512, 1024)]
    return dict(density(boundary_targets(torch.stack(crops), 19, radius=2)), files=[p.name for p in maps], crop=[512, 1024], radius=2)


def synthetic(s, root, batches, seed=0):
    dls = seg_dataloaders('synthetic', root, size=s['crop'], bs=8, seed=seed, targets='auto', n_train=8 * batches, n_val=2,
                          image_size=s['image_size'], device='cpu')
    ys = [boundary_targets(b[1].as_subclass(torch.Tensor), 19, b[2].as_subclass(torch.Tensor), b[3].as_subclass(torch.Tensor), radius=s['radius'])
          for _, b in zip(range(batches), dls.train)]
    return dict(density(torch.cat(ys)), **{k: list(v) if isinstance(v, tuple) else v for k, v in s.items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--batches', type=int, default=4)
    ap.add_argument('--work', default='runs/sbcb_density')
    ap.add_argument('--out', default=str(HERE / 'results' / 'sbcb_density.json'))
    a = ap.parse_args()
    res = {'cityscapes_like': cityscapes_like(), **{k: synthetic(s, Path(a.work) / f"synthetic_{s['image_size'][0]}", a.batches) for k, s in SETTINGS.items()}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    for k, r in res.items():
        print(f"{k:<16} P/HW {r['pos_per_pixel']:6.1%}  on a boundary {r['any_boundary']:6.1%}  positive weight (median) {r['pos_weight_median']:6.2f}  "
              f"clamped to 1: {r['clamped']:5.1%} of {r['images']} images")


if __name__ == '__main__':
    main()
