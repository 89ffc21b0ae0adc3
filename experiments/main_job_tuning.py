"""Choosing the fast main job's settings by measurement: each arm changes one setting of the `fast` configuration
(DeepLabV3+ width 64 on ImageNet tf_efficientnet_lite0, SBCB's CASENet head, the `main` recipe, 128x256 crops; the
baseline as it was before tuning: batch 8, lr 2e-3) and trains it on the same number of images (batch 4: twice the steps) on the synthetic training split, then scores synthetic validation mIoU at
full resolution (`learn.validate`, or `inference.evaluate` for a test scale other than 1). A screening, one seed per
arm: differences below ~0.02 are within seed noise (see experiments/pretrain_vs_scratch.py for a 3-seed comparison).
Arms run in parallel processes of one thread each (`--jobs`); results are appended to the JSON lines file `--out`.

    python experiments/main_job_tuning.py --epochs 20 --jobs 2                 # every arm, 240 steps each (batch 4: 500)
    python experiments/main_job_tuning.py --arms base lr4e-3 --epochs 40       # some arms
    python experiments/main_job_tuning.py --device cuda --epochs 50 --jobs 1
    # the second screening, relative to the job as chosen (batch 4, lr 4e-3), 43 epochs, flip-TTA mIoU and per-class IoU too:
    python experiments/main_job_tuning.py --arms bs4_lr4e-3 class_uniform0.5 class_uniform1 class_weight_none backbone_lr4e-4_head_x10 \
        --epochs 43 --jobs 2 --out experiments/results/main_job_tuning_stage2.jsonl
    # the third: 500 training scenes at equal steps (epochs scaled by 100/500), and the learning curve of the job's configuration:
    python experiments/main_job_tuning.py --arms n_train500 bs4_lr4e-3 --epochs 50 --jobs 2 --out experiments/results/main_job_tuning_stage3.jsonl
    python experiments/main_job_tuning.py --arms bs4_lr4e-3 --epochs 96 --jobs 1 --out experiments/results/main_job_plateau.jsonl    # and --epochs 192
    # the fifth, relative to the job as it is now (radius-1 targets; its rows are the fourth stage's 'edge_radius1'), and seeds 1-2 of two arms:
    python experiments/main_job_tuning.py --arms ema0.995 bn_frozen --epochs 48 --jobs 2 --out experiments/results/main_job_tuning_stage5.jsonl
    python experiments/main_job_tuning.py --arms lr8e-3_warmup lovasz1 --epochs 48 --jobs 2 --out experiments/results/main_job_tuning_stage5.jsonl
    for s in 1 2; do python experiments/main_job_tuning.py --arms ema0.995 lovasz1 --seed $s --epochs 48 --jobs 2 --out experiments/results/main_job_tuning_stage5.jsonl; done

Every arm's row also holds `miou_flip` and `iou_flip`: the same model evaluated with a left-right flip at test time
(`inference.evaluate(..., flip=True)`).
"""
import argparse, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# arm -> (seg_learner overrides, seg_dataloaders overrides, test scale), each relative to 'base': the fast configuration
# before tuning (batch 8, lr 2e-3). The chosen default (`main` recipe) is 'bs4_lr4e-3' (batch 4 at equal images: 2x the steps).
ARMS = {
    'base': ({}, {}, 1.),
    'lr1e-3': ({'lr': 1e-3}, {}, 1.),
    'lr4e-3': ({'lr': 4e-3}, {}, 1.),
    'lr8e-3': ({'lr': 8e-3}, {}, 1.),
    'scale0.75-1.5': ({}, {'scale': [0.75, 1.5]}, 1.),
    'class_weight_median': ({'class_weight': 'median'}, {}, 1.),
    'output_stride16': ({'output_stride': 16}, {}, 1.),
    'whole_images_bs2': ({}, {'size': [256, 512], 'bs': 2}, 1.),
    'upsampled2x': ({'lr': 4e-3}, {'scale': [1.0, 4.0]}, 2.),
    'no_boundary_head_lr4e-3': ({'lr': 4e-3, 'boundary_head': None}, {}, 1.),
    'bs4_lr4e-3': ({'lr': 4e-3}, {'bs': 4}, 1.),
    # second stage, relative to the chosen configuration ('bs4_lr4e-3', run for the job's 43 epochs: `--epochs 43`)
    'class_uniform0.5': ({'lr': 4e-3}, {'bs': 4, 'class_uniform': 0.5}, 1.),
    'class_uniform1': ({'lr': 4e-3}, {'bs': 4, 'class_uniform': 1.}, 1.),
    'class_weight_none': ({'lr': 4e-3, 'class_weight': None}, {'bs': 4}, 1.),
    'backbone_lr4e-4_head_x10': ({'lr': 4e-4, 'head_lr_mult': 10.}, {'bs': 4}, 1.),
    # third stage: more training scenes from the same generator (the first 100 and the 20 validation scenes are the same
    # images: each scene's seed is (seed, split, index)), in their own folder `<root>_n<N>`
    'n_train500': ({'lr': 4e-3}, {'bs': 4, 'n_train': 500}, 1.),
    # fourth stage, relative to the job as it is now (`main` recipe: batch 4, lr 4e-3, 48 epochs = 1,200 steps), in fp32 on a
    # CPU without native bfloat16: the boundary head's targets at radius 1 (at radius 2 the positive weight of its loss
    # clamps to 1 on most crops), batch 2 at equal images (2x the steps), OHEM on the hardest quarter of each image's pixels
    'edge_radius1': ({'lr': 4e-3, 'loss_kw': {'radius': 1}}, {'bs': 4}, 1.),
    'edge_radius2': ({'lr': 4e-3, 'loss_kw': {'radius': 2}}, {'bs': 4}, 1.),  # the job before radius 1 (SBCB's radius), for more seeds
    'bs2_lr4e-3': ({'lr': 4e-3}, {'bs': 2}, 1.),
    'ohem0.25': ({'lr': 4e-3, 'ohem': 0.25}, {'bs': 4}, 1.),
    # the larger ImageNet EfficientNet-Lite backbones whose weights install offline (`models.weights`), at equal steps
    'lite1': ({'lr': 4e-3, 'backbone': 'tf_efficientnet_lite1', 'pretrained': 'efficientnet-lite1'}, {'bs': 4}, 1.),
    'lite2': ({'lr': 4e-3, 'backbone': 'tf_efficientnet_lite2', 'pretrained': 'efficientnet-lite2'}, {'bs': 4}, 1.),
    # fifth stage, relative to the job as it is now (the `main` recipe: radius-1 targets; its rows are the 'edge_radius1' arm):
    # weights averaged over training (timm's ModelEmaV3, decay 0.995: about the last 200 steps; the average is evaluated),
    # the backbone's BatchNorm layers kept in eval mode (ImageNet statistics; their affine parameters still train),
    # twice the learning rate with a 5% linear warm-up, and a Lovasz-softmax term beside the cross-entropy (Berman et al.
    # 2018: a surrogate of the per-class IoU that mIoU averages; weight 1, over the classes present in the batch)
    'ema0.995': ({'lr': 4e-3, '_ema': 0.995}, {'bs': 4}, 1.),
    'bn_frozen': ({'lr': 4e-3, '_bn_frozen': True}, {'bs': 4}, 1.),
    'lr8e-3_warmup': ({'lr': 8e-3, 'warmup': 60, 'warmup_ratio': 0.1}, {'bs': 4}, 1.),
    'lovasz1': ({'lr': 4e-3, '_lovasz': 1.}, {'bs': 4}, 1.),
}

def lovasz_softmax(logits, mask, ignore_index):
    "Lovasz-softmax (Berman et al. 2018, Alg. 1 per class): the Lovasz extension of each class's Jaccard loss at the errors |1[y=c] - p_c|, averaged over the classes present in `mask`."
    import torch
    C = logits.shape[1]
    p = logits.float().softmax(1).movedim(1, 0).reshape(C, -1)
    y = mask.reshape(-1)
    keep = y != ignore_index
    p, y = p[:, keep], y[keep]
    fg = (y[None] == torch.arange(C, device=y.device)[:, None]).float()
    present = fg.sum(1) > 0
    p, fg = p[present], fg[present]
    err, order = (fg - p).abs().sort(1, descending=True)
    fg = fg.gather(1, order)
    gts = fg.sum(1, keepdim=True)
    jac = 1 - (gts - fg.cumsum(1)) / (gts + (1 - fg).cumsum(1))
    grad = torch.cat([jac[:, :1], jac[:, 1:] - jac[:, :-1]], 1)
    return (err * grad).sum(1).mean()

def _extras(ema, bn_frozen, lovasz):
    "The fifth stage's callbacks: weight averaging, frozen backbone BatchNorm, a Lovasz-softmax term."
    import torch
    from fastai.callback.core import Callback
    cbs = []
    if ema:
        from timm.utils import ModelEmaV3
        class EMA(Callback):
            order = 60  # after the optimizer step
            def before_fit(self): self.ema = ModelEmaV3(self.learn.model, decay=ema)
            def after_batch(self):
                if self.training: self.ema.update(self.learn.model)
            def after_fit(self): self.learn.model.load_state_dict(self.ema.module.state_dict())
        cbs.append(EMA())
    if bn_frozen:
        class FrozenBN(Callback):
            order = 1  # after TrainEvalCallback's model.train()
            def before_train(self):
                for m in self.learn.model.backbone.modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm): m.eval()
        cbs.append(FrozenBN())
    if lovasz:
        class Lovasz(Callback):
            "Adds the term to the training loss (the validation loss is left as it is)."
            def after_loss(self):
                if self.training:
                    self.learn.loss_grad = self.learn.loss_grad + lovasz * lovasz_softmax(self.pred['seg'], self.yb[0], self.learn.loss_func.ignore_index)
        cbs.append(Lovasz())
    return cbs

def _per_class(iou, classes):
    items = iou.items() if isinstance(iou, dict) else zip(classes, [float(v) for v in iou])
    return {k: None if v is None or v != v else round(float(v), 4) for k, v in items}

def run_arm(name, epochs, seed, root, device, threads):
    "Train one arm in this process; return its result row."
    import torch, warnings
    warnings.filterwarnings('ignore'); torch.set_num_threads(threads)
    from boundaryseg.data.block import seg_dataloaders
    from boundaryseg.learner import seg_learner
    from boundaryseg.cli.main_job import ChannelsLast, ValidEvery, MAIN_CONFIGS
    from boundaryseg.core import set_seed
    from boundaryseg.models.weights import parse_pretrained
    from boundaryseg.recipes import get_recipe, RECIPE_FIELDS
    from boundaryseg.inference import evaluate
    import dataclasses
    cfg = MAIN_CONFIGS['fast']
    kw, dl_kw, test_scale = ARMS[name]
    rec = get_recipe(cfg['recipe'])
    dl = dict(size=tuple(rec.crop), bs=8); dl.update({k: tuple(v) if isinstance(v, list) else v for k, v in dl_kw.items()})
    set_seed(seed)
    n_train = dl.pop('n_train', 100)
    if n_train != 100:  # its own folder, and the same number of steps: epochs scaled by 100/n_train
        if epochs * 100 % n_train: raise SystemExit(f"--epochs {epochs}: {n_train} scenes need epochs * 100 divisible by {n_train} for equal steps")
        root, epochs = f'{root}_n{n_train}', epochs * 100 // n_train
    dls = seg_dataloaders('synthetic', root, seed=seed, n_train=n_train, n_val=20, device=device, **dl)
    kw = dict(dict(recipe=cfg['recipe'], boundary_head='casenet', lr=2e-3), **kw)
    backbone, pretrained = kw.pop('backbone', cfg['backbone']), kw.pop('pretrained', cfg['pretrained'])
    extra = {k[1:]: kw.pop(k) for k in ('_ema', '_bn_frozen', '_lovasz') if k in kw}
    extras = _extras(extra.get('ema'), extra.get('bn_frozen', False), extra.get('lovasz'))
    unset = {k: None for k, v in kw.items() if v is None and k in RECIPE_FIELDS}  # e.g. class_weight=None: no class weights
    if unset: kw = dict({k: v for k, v in kw.items() if k not in unset}, recipe=dataclasses.replace(rec, **unset))
    learn = seg_learner(dls, arch=cfg['arch'], backbone=backbone, pretrained=parse_pretrained(pretrained),
                        path=f'/tmp/main_job_tuning/{name}', checkpoint=None, monitor=0, cbs=[ValidEvery(0), ChannelsLast(), *extras], **kw)
    t = time.time()
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    train_s = time.time() - t
    ev = lambda flip: evaluate(learn.model.eval(), dls.valid.dataset.reader, dls.spec.n_classes, spec=dls.spec, tols=(), biou_widths=(),
                               progress=False, scales=(test_scale,), flip=flip)
    if test_scale == 1: miou = float(learn.validate()[learn.metrics.attrgot('name').index('miou') + 1])
    else: miou = float(ev(False)['miou'])
    ef = ev(True)  # the same model at test time with a horizontal flip (mean of both predictions)
    learner = {k: (v.name if k == 'recipe' and not isinstance(v, str) else v) for k, v in kw.items()} | ({'unset': sorted(unset)} if unset else {})
    if backbone != cfg['backbone']: learner.update(backbone=backbone, pretrained=pretrained)
    learner.setdefault('loss_kw', dict(rec.loss_kw))  # the boundary targets' radius trained (rows before this field: the recipe's radius 2)
    if extra: learner['extra'] = extra  # the fifth stage's callbacks
    return dict(arm=name, seed=seed, epochs=epochs, steps=epochs * len(dls.train), train_s=round(train_s, 1), miou=round(miou, 4),
                miou_flip=round(float(ef['miou']), 4), iou_flip=_per_class(ef['iou'], dls.spec.classes), learner=learner,
                data={k: list(v) if isinstance(v, tuple) else v for k, v in dl.items()} | {'n_train': n_train}, test_scale=test_scale, device=device,
                threads=threads, load=os.getloadavg()[0])

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--arms', nargs='+', default=list(ARMS), choices=list(ARMS))
    ap.add_argument('--epochs', type=int, default=20, help='epochs of the 100 training images (12 steps of batch 8; 25 of batch 4)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--root', default='data/synthetic')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--jobs', type=int, default=2, help='arms trained at once, one process and one thread each')
    ap.add_argument('--out', default='experiments/results/main_job_tuning.jsonl')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)  # internal: train this arm and print its row
    a = ap.parse_args()
    if a.one:
        print('ROW ' + json.dumps(run_arm(a.one, a.epochs, a.seed, a.root, a.device, 1)), flush=True); sys.exit()
    from boundaryseg.data.datasets import get_dataset
    from boundaryseg.data import synthetic  # noqa: F401 (registers the dataset)
    get_dataset('synthetic', a.root, 'train')  # generate once, before the arms start
    env = dict(os.environ, OMP_NUM_THREADS='1')
    def go(name):
        r = subprocess.run([sys.executable, __file__, '--one', name, '--epochs', str(a.epochs), '--seed', str(a.seed), '--root', a.root,
                            '--device', a.device], capture_output=True, text=True, env=env)
        rows = [l[4:] for l in r.stdout.splitlines() if l.startswith('ROW ')]
        if not rows: raise RuntimeError(f"arm {name} failed:\n{r.stderr[-3000:]}")
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, 'a') as f: f.write(rows[0] + '\n')
        print(rows[0], flush=True)
    with ThreadPoolExecutor(a.jobs) as ex: list(ex.map(go, a.arms))
