#!/usr/bin/env python
"""Train Seamless Scene Segmentation on the built-in synthetic street scenes within a small CPU budget and evaluate it on
the validation split: the six loss terms per epoch, PQ / SQ / RQ (all, things, stuff), PQ†, mIoU (panoptic output and
semantic head), mask AP, and a figure of validation images (image | ground truth | prediction, panoptic overlays).

Data as the paper feeds it (Sec. 5): `panoptic.data.panoptic_dataloaders`, whole images whose short side is floor(short t),
t ~ U[0.5, 2], random flip, no crop, padded batches. The synthetic configuration (`SYNTHETIC`, issue 19) matches the scene
scale and the anchors to each other: 256x512 scenes at short side 256, anchors of scale 4 (16..256 px on P2..P6) and
ratios 1/3, 1/2, 1, 2, 3, so that 85% of the thing boxes have an anchor at IoU >= 0.5 and 27% at the matcher's 0.7, and
P6 has valid anchors (the old 128x256 crops with scale-2 anchors: 57% / 8%, and no valid P6 anchor at all;
`experiments/seamless_anchors.py` measures both). The 'seamless' recipe (SGD 0.01 Nesterov, wd 1e-4, warm-up and
x0.1 milestones at the paper's fractions of the run: 200/48k, 36k/48k, 44k/48k). Budget settings (stated in the JSON):
ResNet-18 from scratch by default (nothing frozen: only pretrained weights are) or any timm backbone with `--pretrained`
(the tutorial's run: ImageNet EfficientNet-Lite0, its stem and stride-4 stage frozen as the paper freezes res2), FPN and
RPN width 128, RoI head FC 256 / mask convs 128, 128 sampled RoIs per image, RPN top-2000 -> 500 proposals in training
(1000 -> 300 at test), stuff-area threshold scaled with the image area (4096 px at 1024x2048), batch 4. The JSON also
holds the loss-balance monitor's measurements (every 50 steps), drawn in `<out>_balance.png`.

    python bench/seamless_synthetic.py --steps 2000                  # ResNet-18 from scratch (several CPU-hours here)
    python bench/seamless_synthetic.py --steps 2 --n-train 8 --n-val 2 --out /tmp/seamless_smoke   # a smoke run
    python bench/seamless_synthetic.py --device cuda --steps 20000
    python bench/seamless_synthetic.py --steps 250 --threads 2 --backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0 \
        --out nbs/tutorials/results/seamless_synthetic    # the tutorial's run (ImageNet weights, about an hour on two cores)
"""
import argparse, json, os, sys, time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from boundaryseg.core import set_seed  # noqa: E402
from fastai.callback.core import Callback, CancelFitException  # noqa: E402
from boundaryseg.panoptic.data import panoptic_dataloaders  # noqa: E402
from boundaryseg.panoptic.fusion import scaled_stuff_area  # noqa: E402
from boundaryseg.data.datasets import get_dataset  # noqa: E402
from boundaryseg.learner import seg_learner  # noqa: E402
from boundaryseg.inference import save_model  # noqa: E402
from boundaryseg.panoptic.inference import evaluate_panoptic  # noqa: E402
from boundaryseg.panoptic.fusion import show_panoptic  # noqa: E402
from boundaryseg.metrics.panoptic import sem_inst_to_panoptic  # noqa: E402
from boundaryseg.vis import save_fig  # noqa: E402
from boundaryseg.monitor import LossBalance, plot_loss_balance  # noqa: E402

SCORES = ('pq', 'sq', 'rq', 'pq_th', 'sq_th', 'rq_th', 'pq_st', 'sq_st', 'rq_st', 'pq_dagger', 'miou', 'miou_semantic', 'ap', 'ap_detections')


# scene scale and anchors of the synthetic run, matched (experiments/seamless_anchors.py measures the coverage)
SYNTHETIC = dict(image_size=(256, 512), short=256, scale=(0.5, 2.0), max_long=2048, anchor_scale=4., ratios=(1 / 3, 0.5, 1., 2., 3.))


def budget_model_kw(h, w, anchor_scale=SYNTHETIC['anchor_scale'], ratios=SYNTHETIC['ratios']):
    return dict(width=128, anchor_scale=anchor_scale, ratios=tuple(ratios), min_stuff_area=scaled_stuff_area((h, w)),
                roi_kw=dict(n_samples=128, fc=256, conv=128), rpn_kw=dict(pre_nms=(2000, 1000), post_nms=(500, 300)))


class StopAfter(Callback):
    "Stop the fit after `n` training steps."
    order = 99
    def __init__(self, n): self.n = n
    def after_batch(self):
        if self.training and self.learn.train_iter >= self.n: raise CancelFitException()


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
    from PIL import Image  # 256 colours (a third of the size; the overlays keep their colours)
    Image.open(path).convert('RGB').quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--steps', type=int, default=2000, help='training steps (the schedule runs over the whole epochs they start)')
    ap.add_argument('--bs', type=int, default=4)
    ap.add_argument('--size', type=int, nargs=2, default=SYNTHETIC['image_size'], help='synthetic scene size (H W)')
    ap.add_argument('--short', type=int, default=SYNTHETIC['short'], help='training short side: floor(short t), t ~ U[0.5, 2]; validation at short')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--n-train', type=int, default=100)
    ap.add_argument('--n-val', type=int, default=20)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--recipe', default='seamless')
    ap.add_argument('--lr', type=float, default=None)
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--pretrained', default=None, help="backbone weights: a registered local source ('efficientnet-lite0' for tf_efficientnet_lite0), a file, or 'true' for timm's hub; default: random")
    ap.add_argument('--data', default=str(ROOT / 'data' / 'synthetic_seamless'))
    ap.add_argument('--out', default=str(ROOT / 'nbs' / 'tutorials' / 'results' / 'seamless_synthetic'))
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    h, w = a.size
    set_seed(a.seed)
    data_kw = dict(n_train=a.n_train, n_val=a.n_val, image_size=(h, w))
    dls = panoptic_dataloaders('synthetic', a.data, short=a.short, scale=SYNTHETIC['scale'], max_long=SYNTHETIC['max_long'], test_short=a.short,
                               bs=a.bs, seed=a.seed, device=a.device, **data_kw)
    out = Path(a.out)
    run = ROOT / 'runs' / out.name  # history.csv and model.pth (not committed)
    mk = budget_model_kw(h, w)
    pretrained = True if (a.pretrained or '').lower() == 'true' else a.pretrained
    learn = seg_learner(dls, 'seamless', a.backbone, recipe=a.recipe, path=run, checkpoint=None, lr=a.lr, pretrained=pretrained, **mk)
    t0, c0 = time.perf_counter(), time.process_time()
    epochs = -(-a.steps // len(dls.train))
    learn.fit(epochs, cbs=[StopAfter(a.steps)])
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    names = list(learn.recorder.metric_names)[1:-1]
    history = [dict(zip(names, map(float, v))) for v in learn.recorder.values]
    ds = get_dataset('synthetic', a.data, 'val', **data_kw)
    r = evaluate_panoptic(learn.model, ds, keep=4, progress=False, short=a.short)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(r['examples'], ds.spec, out.with_name(out.name + '_val.png'))
    save_model(learn.model, run / 'model.pth', meta=dict(spec=ds.spec.name, data='synthetic', size=[h, w], short=a.short, recipe=a.recipe))
    f = lambda v: None if v != v else round(float(v), 5)
    lb_rows = [row for cb in learn.cbs if isinstance(cb, LossBalance) for row in cb.rows]  # the loss-balance monitor's measurements
    res = dict(settings=dict(backbone=a.backbone, pretrained=a.pretrained or False, size=[h, w], short=a.short, scale=list(SYNTHETIC['scale']), loader='panoptic_dataloaders',
                             bs=a.bs, epochs=epochs, iterations=int(learn.train_iter), device=a.device,
                             warmup_iters=learn.recipe.warmup_iters(epochs * len(dls.train)), frozen=list(learn.model.backbone.frozen),
                             n_train=a.n_train, n_val=a.n_val, seed=a.seed, recipe=learn.recipe.name, lr=learn.recipe.lr, model_kw=mk,
                             threads=a.threads, torch=torch.__version__),
               train_cpu_minutes=round(train_cpu / 60, 2), train_wall_minutes=round(train_wall / 60, 2),
               history=history, val={k: f(r[k]) for k in SCORES},
               loss_balance=[{k: (f(v) if isinstance(v, float) else v) for k, v in row.items()} for row in lb_rows],
               val_per_class={ds.spec.classes[c]: {k: f(v) for k, v in s.items()} for c, s in r['per_class'].items()})
    if lb_rows: save_fig(plot_loss_balance(lb_rows, title='Seamless on the synthetic scenes: loss balance'), out.with_name(out.name + '_balance.png'), dpi=90)
    js = out.with_suffix('.json')
    tmp = js.with_suffix('.tmp')
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, js)
    print(json.dumps(res['val'], indent=1))
    print(f'wrote {js} and {out.name}_val.png ({res["train_cpu_minutes"]} CPU-minutes of training)')


if __name__ == '__main__':
    main()
