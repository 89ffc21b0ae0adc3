"""SBCB's directions on the synthetic dataset, at equal steps, over seeds, on a testbed rebuilt for issue 19 (6):

- SBCB(CASENet) on DeepLabV3+ vs DeepLabV3+ alone: mIoU and boundary F-score at 3/5/9/12 px (Tables 1, 10);
- SBCB vs BBCB (the binary boundary head): their mIoU gains over the baseline (Table 4);
- the boundary head's MF-ODS after joint training vs the single-task CASENet detector (Table 1).

The testbed (`TESTBED`): 256x512 synthetic scenes trained at 256x512 (random scale 0.5-2, crop, flip) with radius-1
boundary targets, so that the boundaries (summed over classes) cover about 11% of an image and the multi-label edge
loss weighs its positives about 7.6x, no image clamping to 1 (Cityscapes-like 512x1024 crops with radius 2: 7% and
13); the old testbed (64x128 crops of 128x256 scenes, radius 2) covered 55%, its weight clamped to 1 on 62% of the
images, which switched the loss's class balance off (`experiments/sbcb_density.py` measures all three). During
training the edge loss's positive weight and clamped share are recorded per run.

    python experiments/sbcb_experiments.py --steps 3000 --seeds 0 1 2          # the full run (not run here)
    python experiments/sbcb_experiments.py --configs base sbcb --seeds 0 --steps 2 --n_train 8 --n_val 2 --out /tmp/x.json   # a smoke run
    python experiments/sbcb_experiments.py --device cuda --steps 20000
    # ImageNet EfficientNet-Lite0 (the papers start from ImageNet), one process per config beside each other, then joined:
    python experiments/sbcb_experiments.py --configs base --backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0 --output_stride 32 --bs 4 --steps 300 --out /tmp/sb_base.json &
    python experiments/sbcb_experiments.py --configs sbcb --backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0 --output_stride 32 --bs 4 --steps 300 --out /tmp/sb_sbcb.json; wait
    python experiments/sbcb_experiments.py --merge /tmp/sb_base.json /tmp/sb_sbcb.json --out experiments/results/sbcb_lite0.json

Each run: `seg_dataloaders('synthetic', targets='auto')`, by default ResNet-18 at output stride 8 from scratch
(`--backbone`, `--pretrained`, `--output_stride` choose others, e.g. the ImageNet EfficientNet-Lite0 of `models.weights`), the `main` recipe without the FCN auxiliary head and with radius-1 targets (AdamW 4e-3, poly, sqrt
class weights; the SBCB recipe's SGD 0.01 is tuned for ImageNet-pretrained backbones), `width` 32, `--steps` steps of
batch 8, then evaluation on the validation scenes at full resolution: mIoU, boundary F (3, 5, 9, 12 px), and MF-ODS
(the Cityscapes "thin" protocol, see PROTOCOL; 33 thresholds) of the `edge` output (the SBCB head kept in eval for
this diagnostic: `models.sbcb.boundary_outputs`). Runs are appended to the JSON one by one, so the script can be
stopped and resumed; one process.
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
# The Cityscapes "thin" protocol at full resolution: on 2048x1024 frames it evaluates at half resolution with a tolerance of
# 0.0035 x the diagonal (4 px there, 0.35% of the frame); these 256x512 scenes are evaluated at full resolution, where
# 0.0035 x the diagonal is 2 px
from boundaryseg.metrics.sbd import SBDProtocol  # noqa: E402
from fastai.callback.core import Callback, CancelFitException  # noqa: E402
PROTOCOL = SBDProtocol('thin', 1.0, 0.0035, True)
TESTBED = dict(image_size=(256, 512), crop=(256, 512), radius=1)  # Cityscapes-like boundary density (see the docstring)
CONFIGS = {  # name -> (arch, model options); boundary_head=None overrides the main recipe's own CASENet head
    'base': ('deeplabv3plus', {'boundary_head': None}),
    'sbcb': ('deeplabv3plus', {'boundary_head': 'casenet'}),
    'bbcb': ('deeplabv3plus', {'boundary_head': 'bbcb'}),
    'casenet': ('casenet', {'boundary_head': None}),
}


class StopAfter(Callback):
    "Stop the fit after `n` training steps; record the multi-label edge losses' positive weights and clamped shares."
    order = 99
    def __init__(self, n): self.n, self.pw, self.clamped = n, [], []
    def after_loss(self):
        if not self.training: return
        for f in getattr(self.learn.loss_func, 'fns', {}).values():
            if hasattr(f, 'clamped') and hasattr(f, 'pos_weight'):
                self.pw += f.pos_weight.tolist(); self.clamped.append(f.clamped)
    def after_batch(self):
        if self.training and self.learn.train_iter >= self.n: raise CancelFitException()


def run(name, seed, a):
    from boundaryseg.core import set_seed
    from boundaryseg.data.block import seg_dataloaders
    from boundaryseg.learner import seg_learner
    from boundaryseg.recipes import get_recipe
    from boundaryseg.inference import evaluate
    from boundaryseg.models.sbcb import boundary_outputs
    torch.set_num_threads(a.threads)
    arch, mk = CONFIGS[name]
    set_seed(seed)
    dls = seg_dataloaders('synthetic', a.root, size=tuple(a.crop), bs=a.bs, seed=seed, targets='auto', n_train=a.n_train, n_val=a.n_val,
                          image_size=tuple(a.image_size), device=a.device)
    rec = get_recipe('main', aux=False, loss_kw={'radius': a.radius})
    stop = StopAfter(a.steps)
    with tempfile.TemporaryDirectory() as d:
        # metrics=[]: scores are computed once at the end (the detectors' per-epoch MF-ODS would double their time)
        from boundaryseg.models.weights import parse_pretrained
        from boundaryseg.monitor import LossBalance
        learn = seg_learner(dls, arch, backbone=a.backbone, pretrained=parse_pretrained(a.pretrained), recipe=rec, width=a.width,
                            output_stride=a.output_stride, path=d, checkpoint=None, metrics=[], monitor=a.monitor, **mk)
        t = time.time()
        learn.fit(-(-a.steps // len(dls.train)), cbs=[stop])
        train_s = time.time() - t
    t = time.time()
    with boundary_outputs(learn.model) as m: res = evaluate(m, dls.valid.dataset.reader, 19, progress=False, thresholds=33, edge_protocol=PROTOCOL)
    out = dict(config=name, seed=seed, steps=int(learn.train_iter), train_s=round(train_s, 1), eval_s=round(time.time() - t, 1))
    lb = [c for c in learn.cbs if isinstance(c, LossBalance)]
    if lb and lb[0].rows:  # the loss-balance monitor's rows (every --monitor steps): weighted value, gradient norms, share, cosine per term
        out['balance'] = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in lb[0].rows]
    if stop.pw: out.update(edge_pos_weight_median=round(float(np.median(stop.pw)), 2), edge_clamped_share=round(float(np.mean(stop.clamped)), 3))
    if 'miou' in res: out.update(miou=float(res['miou']), acc=float(res['acc']), bf=dict(zip(map(str, res['bf_tols']), map(float, res['bf']))),
                                 iou=[float(v) for v in res['iou']])
    if 'edge' in res:
        e = res['edge']
        out.update(mf_ods=float(e['mf_ods']), mf_ois=float(e['mf_ois']), map=float(e['map']), ods_f=[float(v) for v in e['ods_f']],
                   recall=np.asarray(e['recall']).round(4).tolist(), precision=np.asarray(e['precision']).round(4).tolist())
    return out


def summary(runs):
    "mean, std (n-1) and n of each score per config, the paired gains over 'base' (same seeds), and the head's MF-ODS over 'casenet'."
    def ms(v): return dict(mean=statistics.mean(v), std=statistics.stdev(v) if len(v) > 1 else float('nan'), n=len(v))
    by = {}
    for r in runs: by.setdefault(r['config'], {})[r['seed']] = r
    out = {}
    for c, rs in by.items():
        s = {}
        for k in ('miou', 'mf_ods'):
            v = [r[k] for r in rs.values() if k in r]
            if v: s[k] = ms(v)
        for t in ('3', '5', '9', '12'):
            v = [r['bf'][t] for r in rs.values() if 'bf' in r]
            if v: s[f'bf_{t}px'] = ms(v)
        if c != 'base' and 'base' in by:
            common = sorted(set(rs) & set(by['base']))
            if common and 'miou' in rs[common[0]]:
                s['gain_miou'] = ms([rs[i]['miou'] - by['base'][i]['miou'] for i in common])
                for t in ('3', '5', '9', '12'): s[f'gain_bf_{t}px'] = ms([rs[i]['bf'][t] - by['base'][i]['bf'][t] for i in common])
        if c != 'casenet' and 'casenet' in by:  # the head's MF-ODS after joint training against the single-task detector (Table 1)
            common = sorted(i for i in set(rs) & set(by['casenet']) if 'mf_ods' in rs[i] and 'mf_ods' in by['casenet'][i])
            if common: s['gain_mf_ods_vs_casenet'] = ms([rs[i]['mf_ods'] - by['casenet'][i]['mf_ods'] for i in common])
        out[c] = s
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--configs', nargs='*', default=list(CONFIGS))
    ap.add_argument('--seeds', nargs='*', type=int, default=[0, 1, 2])
    ap.add_argument('--steps', type=int, default=3000)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--image_size', type=int, nargs=2, default=list(TESTBED['image_size']))
    ap.add_argument('--crop', type=int, nargs=2, default=list(TESTBED['crop']))
    ap.add_argument('--radius', type=float, default=TESTBED['radius'], help='boundary radius of the training targets')
    ap.add_argument('--n_train', type=int, default=100)
    ap.add_argument('--n_val', type=int, default=20)
    ap.add_argument('--root', default='data/synthetic_256x512')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--backbone', default='resnet18', help='timm backbone (the papers start from ImageNet: e.g. tf_efficientnet_lite0 with --pretrained efficientnet-lite0)')
    ap.add_argument('--pretrained', default='none', help="backbone weights: none, timm, a file, or a registered source (models.weights)")
    ap.add_argument('--output_stride', type=int, default=8)
    ap.add_argument('--monitor', type=int, default=50, help='loss-balance measurement every N steps (stored per run)')
    ap.add_argument('--merge', nargs='*', default=None, help='join the runs of these JSON files into --out (one process per config, run beside each other) and exit')
    ap.add_argument('--out', default=str(HERE / 'results' / 'sbcb_experiments.json'))
    a = ap.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.merge is not None:
        parts = [json.loads(Path(f).read_text()) for f in a.merge]
        setups = {json.dumps({k: v for k, v in p['setup'].items()}, sort_keys=True) for p in parts}
        if len(setups) > 1: raise SystemExit(f"--merge: the files were run with different setups: {sorted(setups)}")
        runs = [r for p in parts for r in p['runs']]
        out.write_text(json.dumps(dict(runs=runs, summary=summary(runs), setup=parts[0]['setup']), indent=1))
        print(json.dumps(summary(runs), indent=1)); return
    data = json.loads(out.read_text()) if out.exists() else {'runs': []}
    done = {(r['config'], r['seed'], r['steps']) for r in data['runs']}
    for seed in a.seeds:
        for c in a.configs:
            if (c, seed, a.steps) in done: continue
            r = run(c, seed, a)
            data['runs'].append(r)
            data['summary'] = summary([x for x in data['runs'] if x['steps'] == a.steps])
            data['setup'] = dict(steps=a.steps, width=a.width, crop=a.crop, bs=a.bs, radius=a.radius, backbone=a.backbone, pretrained=a.pretrained, output_stride=a.output_stride, monitor=a.monitor,
                                 recipe='main (aux off, radius %g)' % a.radius, n_train=a.n_train, n_val=a.n_val, image_size=a.image_size, device=a.device,
                                 sbd_protocol='thin GT (radius 1, thinned), thinned predictions, full resolution, max_dist 0.0035 (2 px)', thresholds=33)
            out.write_text(json.dumps(data, indent=1))
            print(json.dumps({k: v for k, v in r.items() if k not in ('iou', 'ods_f', 'recall', 'precision')}), flush=True)
    print(json.dumps(data.get('summary', {}), indent=1))


if __name__ == '__main__':
    main()
