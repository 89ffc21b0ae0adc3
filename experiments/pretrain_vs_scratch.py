"""What ImageNet pretraining buys the main job: the same model (the `fast` main-job configuration: DeepLabV3+ width 64 on
tf_efficientnet_lite0 at output stride 32, SBCB's CASENet head, the `main` recipe) trained for the same number of
steps from the EfficientNet-Lite0 package's ImageNet weights and from random initialisation, over several seeds, then
evaluated like the main job (synthetic validation split, full resolution): mIoU, boundary F at 3 px, per-class IoU.
One factor differs between the arms: `pretrained`. Results go to a JSON file that the main-job notebook can read.

    .venv/bin/python experiments/pretrain_vs_scratch.py --epochs 5 --seeds 0 1 2 --out experiments/pretrain_vs_scratch.json
    .venv/bin/python experiments/pretrain_vs_scratch.py --device cuda --epochs 43     # the main job's full length
"""
import argparse, json, time, warnings
from pathlib import Path
import torch

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--epochs', type=int, default=3, help="epochs of the 100 training images (25 steps of the recipe's batch of 4 each)")
ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
ap.add_argument('--arms', nargs='+', default=['efficientnet-lite0', 'none'], help='pretrained= values to compare')
ap.add_argument('--root', default='data/synthetic')
ap.add_argument('--device', default='cpu')
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--out', default='experiments/pretrain_vs_scratch.json')
a = ap.parse_args()
warnings.filterwarnings('ignore')
torch.set_num_threads(a.threads)
from fastai.callback.core import Callback, CancelValidException
from boundaryseg.core import set_seed
from boundaryseg.data.block import seg_dataloaders
from boundaryseg.learner import seg_learner
from boundaryseg.inference import evaluate
from boundaryseg.models.sbcb import boundary_outputs
from boundaryseg.cli.main_job import MAIN_CONFIGS, ChannelsLast
from boundaryseg.recipes import get_recipe

class NoValid(Callback):
    "No validation pass during training: both arms are scored by the same full-resolution evaluation afterwards."
    def before_validate(self): raise CancelValidException()

cfg = MAIN_CONFIGS['fast']
rec = get_recipe(cfg['recipe'])
out = Path(a.out)
config = dict(cfg, recipe=rec.name, lr=rec.lr, crop=list(rec.crop), bs=rec.bs)
res = json.loads(out.read_text()) if out.exists() else dict(config=config, runs=[])
if res['config'] != config: raise SystemExit(f"{out} holds runs of another configuration ({res['config']}); pass another --out")
for seed in a.seeds:
    for arm in a.arms:
        if any(r['seed'] == seed and r['pretrained'] == arm and r['epochs'] == a.epochs for r in res['runs']): continue
        set_seed(seed)
        dls = seg_dataloaders('synthetic', a.root, size=rec.crop, bs=rec.bs, seed=seed, targets='auto', device=a.device, n_train=100, n_val=20)
        learn = seg_learner(dls, arch=cfg['arch'], backbone=cfg['backbone'], recipe=rec, pretrained=False if arm == 'none' else arm,
                            boundary_head='casenet', checkpoint=None, path=f'/tmp/pretrain_vs_scratch/{arm}_{seed}',
                            cbs=[NoValid(), ChannelsLast()])
        t = time.time()
        learn.fit(a.epochs)
        tt = time.time() - t
        spec, ds = dls.spec, dls.valid.dataset.reader
        with boundary_outputs(learn.model) as m: r = evaluate(m, ds, spec.n_classes, spec=spec, thresholds=9)
        run = dict(pretrained=arm, seed=seed, epochs=a.epochs, steps=a.epochs * len(dls.train), train_s=round(tt, 1), device=a.device,
                   miou=round(float(r['miou']), 4), bf3=round(float(r['bf'][0]), 4),
                   iou={c: (None if v != v else round(float(v), 4)) for c, v in zip(spec.classes, r['iou'])})
        print(json.dumps({k: v for k, v in run.items() if k != 'iou'}), flush=True)
        res['runs'].append(run)
        out.write_text(json.dumps(res, indent=1))
import statistics as st
def sd(v): return st.stdev(v) if len(v) > 1 else float('nan')
by = {arm: {r['seed']: r['miou'] for r in res['runs'] if r['pretrained'] == arm and r['epochs'] == a.epochs} for arm in a.arms}
for arm, ms in by.items():
    v = list(ms.values())
    if v: print(f"{arm:20s} {a.epochs} epochs: mIoU {st.mean(v):.4f} ± {sd(v):.4f} over {len(v)} seeds ({', '.join(f'{m:.4f}' for m in v)})")
if len(a.arms) == 2:
    seeds = sorted(set(by[a.arms[0]]) & set(by[a.arms[1]]))
    g = [by[a.arms[0]][s] - by[a.arms[1]][s] for s in seeds]
    if g: print(f"paired gain {a.arms[0]} - {a.arms[1]}: {st.mean(g):+.4f} ± {sd(g):.4f} over seeds {seeds} ({', '.join(f'{x:+.4f}' for x in g)})")
