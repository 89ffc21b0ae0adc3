"""Why the fifth screening's `bn_frozen` arm collapses (validation mIoU 0.035 after 1,200 steps): the job's model trained
for `--steps` steps with and without the backbone's BatchNorm layers held in eval mode (`main_job_tuning._extras`), then
validated twice: as `learn.validate` does (every BN layer on its running statistics) and with the head's BN layers
(outside the backbone) on each validation batch's own statistics, their running statistics left untouched. A large
gap between the two for `bn_frozen` only says that the head's running statistics no longer describe the features the
head sees: with the backbone's normalisation frozen at ImageNet's statistics while its weights train at the job's rate,
the scale of the backbone's features drifts, and the head's BN (momentum 0.1) hides the drift in training, not in eval.

    python experiments/main_job_bn_frozen.py [--steps 75] [--seed 0] [--device cpu] [--out experiments/results/main_job_bn_frozen.json]
"""
import argparse, json, sys, warnings
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import main_job_tuning as mj  # noqa: E402

def head_bn_batch_stats():
    "A callback that puts the BN layers outside the backbone in train mode for validation, with momentum 0 (running statistics kept)."
    from fastai.callback.core import Callback
    class HeadBN(Callback):
        order = 1  # after TrainEvalCallback's model.eval()
        def before_validate(self):
            bb = {id(m) for m in self.learn.model.backbone.modules()}
            for m in self.learn.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and id(m) not in bb: m.momentum = 0.; m.train()
    return HeadBN()

def run(frozen, steps, seed, root, device):
    from boundaryseg.data.block import seg_dataloaders
    from boundaryseg.learner import seg_learner
    from boundaryseg.cli.main_job import ChannelsLast, ValidEvery, MAIN_CONFIGS
    from boundaryseg.core import set_seed
    from boundaryseg.models.weights import parse_pretrained
    from boundaryseg.recipes import get_recipe
    cfg = MAIN_CONFIGS['fast']
    rec = get_recipe(cfg['recipe'])
    set_seed(seed)
    dls = seg_dataloaders('synthetic', root, seed=seed, n_train=100, n_val=20, size=tuple(rec.crop), bs=rec.bs, device=device)
    learn = seg_learner(dls, arch=cfg['arch'], backbone=cfg['backbone'], pretrained=parse_pretrained(cfg['pretrained']),
                        recipe=cfg['recipe'], boundary_head='casenet', path='/tmp/main_job_bn_frozen', checkpoint=None, monitor=0,
                        cbs=[ValidEvery(0), ChannelsLast(), *mj._extras(None, frozen, None)])
    epochs = -(-steps // len(dls.train))
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    i = learn.metrics.attrgot('name').index('miou') + 1
    with learn.no_bar(), learn.no_logging():
        running = float(learn.validate()[i])
        batch = float(learn.validate(cbs=[head_bn_batch_stats()])[i])
    return dict(arm='bn_frozen' if frozen else 'job', steps=epochs * len(dls.train), miou_head_bn_running=round(running, 4),
                miou_head_bn_batch=round(batch, 4))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=75, help='training steps of each arm, rounded up to whole epochs (25 steps of batch 4)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--root', default='data/synthetic')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default='experiments/results/main_job_bn_frozen.json')
    a = ap.parse_args()
    warnings.filterwarnings('ignore'); torch.set_num_threads(a.threads)
    rows = [run(f, a.steps, a.seed, a.root, a.device) for f in (False, True)]
    for r in rows: print(json.dumps(r), flush=True)
    Path(a.out).write_text(json.dumps({'runs': rows, 'seed': a.seed, 'device': a.device}, indent=1) + '\n')
