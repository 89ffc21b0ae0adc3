#!/usr/bin/env python
"""Train Seamless Scene Segmentation on the built-in synthetic street scenes within a small CPU budget and evaluate it on
the validation split: the six loss terms per epoch, PQ / SQ / RQ (all, things, stuff), PQ†, mIoU (panoptic output and
semantic head), mask AP, and a figure of validation images (image | ground truth | prediction, panoptic overlays).

The budget settings (stated in the output JSON): ResNet-18 from scratch (no pretrained weights here), FPN and RPN width
128, RoI head FC 256 / mask convs 128, 128 sampled RoIs per image, RPN top-2000 -> 500 proposals in training
(1000 -> 300 at test), anchors of scale 2 (16..256 px: the synthetic objects are small), stuff-area threshold scaled
with the image area (4096 px at 1024x2048 -> 64 px at 128x256), 128x256 images, batch 4, the 'seamless' recipe
(SGD 0.01 Nesterov, wd 1e-4, 200-iteration warm-up, x0.1 at 75% and 92% of training), six loss terms of weight 1.

    python bench/seamless_synthetic.py                         # ~25-30 CPU-minutes: writes nbs/tutorials/results/seamless_synthetic.*
    python bench/seamless_synthetic.py --epochs 2 --n-train 8  # a smoke run
"""
import argparse, json, os, sys, time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from boundaryseg.core import set_seed  # noqa: E402
from boundaryseg.data.block import seg_dataloaders  # noqa: E402
from boundaryseg.data.datasets import get_dataset  # noqa: E402
from boundaryseg.learner import seg_learner  # noqa: E402
from boundaryseg.inference import save_model  # noqa: E402
from boundaryseg.panoptic.inference import evaluate_panoptic  # noqa: E402
from boundaryseg.panoptic.fusion import show_panoptic  # noqa: E402
from boundaryseg.metrics.panoptic import sem_inst_to_panoptic  # noqa: E402
from boundaryseg.vis import save_fig  # noqa: E402

SCORES = ('pq', 'sq', 'rq', 'pq_th', 'sq_th', 'rq_th', 'pq_st', 'sq_st', 'rq_st', 'pq_dagger', 'miou', 'miou_semantic', 'ap', 'ap_detections')


def budget_model_kw(h, w):
    return dict(width=128, anchor_scale=2., min_stuff_area=max(1, round(4096 * h * w / (1024 * 2048))),
                roi_kw=dict(n_samples=128, fc=256, conv=128), rpn_kw=dict(pre_nms=(2000, 1000), post_nms=(500, 300)))


def gt_panoptic(mask, inst, thing):
    "The ground truth as a panoptic id map `class * 1000 + k` (crowd and void as void), for the figure."
    dense, segs = sem_inst_to_panoptic(mask, inst, thing, no_inst='void')
    cat = np.array([255] + [s['category_id'] for s in segs])[dense]
    return cat * 1000 + np.where(np.asarray(thing)[np.minimum(cat, len(thing) - 1)] & (dense > 0), dense, 0)


def figure(examples, spec, path, n=3):
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(n, 2, figsize=(10, 2.6 * n), squeeze=False)
    for (img, mask, inst, pred), ax in zip(examples[:n], axs):
        show_panoptic(img, gt_panoptic(mask, inst, spec.thing), spec, ax=ax[0], title='ground truth')
        show_panoptic(img, pred['panoptic'], spec, scores=pred['instances']['segment_scores'], ax=ax[1], title='prediction')
    fig.tight_layout()
    save_fig(fig, path, dpi=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--epochs', type=int, default=20)
    ap.add_argument('--bs', type=int, default=4)
    ap.add_argument('--size', type=int, nargs=2, default=(128, 256))
    ap.add_argument('--n-train', type=int, default=100)
    ap.add_argument('--n-val', type=int, default=20)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--recipe', default='seamless')
    ap.add_argument('--lr', type=float, default=None)
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--data', default=str(ROOT / 'data' / 'synthetic_seamless'))
    ap.add_argument('--out', default=str(ROOT / 'nbs' / 'tutorials' / 'results' / 'seamless_synthetic'))
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    h, w = a.size
    set_seed(a.seed)
    data_kw = dict(n_train=a.n_train, n_val=a.n_val, image_size=(h, w))
    dls = seg_dataloaders('synthetic', a.data, size=(h, w), bs=a.bs, targets=('mask', 'inst'), seed=a.seed, device='cpu', **data_kw)
    out = Path(a.out)
    run = ROOT / 'runs' / out.name  # history.csv and model.pth (not committed)
    mk = budget_model_kw(h, w)
    learn = seg_learner(dls, 'seamless', a.backbone, recipe=a.recipe, path=run, checkpoint=None, lr=a.lr, **mk)
    t0, c0 = time.perf_counter(), time.process_time()
    learn.fit(a.epochs)
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    names = list(learn.recorder.metric_names)[1:-1]
    history = [dict(zip(names, map(float, v))) for v in learn.recorder.values]
    ds = get_dataset('synthetic', a.data, 'val', **data_kw)
    r = evaluate_panoptic(learn.model, ds, keep=4, progress=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(r['examples'], ds.spec, out.with_name(out.name + '_val.png'))
    save_model(learn.model, run / 'model.pth', meta=dict(spec=ds.spec.name, data='synthetic', size=[h, w], recipe=a.recipe))
    f = lambda v: None if v != v else round(float(v), 5)
    res = dict(settings=dict(backbone=a.backbone, pretrained=False, size=[h, w], bs=a.bs, epochs=a.epochs, iterations=a.epochs * len(dls.train),
                             n_train=a.n_train, n_val=a.n_val, seed=a.seed, recipe=learn.recipe.name, lr=learn.recipe.lr, model_kw=mk,
                             threads=a.threads, torch=torch.__version__),
               train_cpu_minutes=round(train_cpu / 60, 2), train_wall_minutes=round(train_wall / 60, 2),
               history=history, val={k: f(r[k]) for k in SCORES},
               val_per_class={ds.spec.classes[c]: {k: f(v) for k, v in s.items()} for c, s in r['per_class'].items()})
    js = out.with_suffix('.json')
    tmp = js.with_suffix('.tmp')
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, js)
    print(json.dumps(res['val'], indent=1))
    print(f'wrote {js} and {out.name}_val.png ({res["train_cpu_minutes"]} CPU-minutes of training)')


if __name__ == '__main__':
    main()
