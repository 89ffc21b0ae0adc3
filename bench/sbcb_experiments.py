"""SBCB's directions on the synthetic dataset, at equal steps, over seeds (the tutorial `nbs/tutorials/sbcb.ipynb` shows
the committed results, `bench/results/sbcb_experiments.json`):

- SBCB(CASENet) on DeepLabV3+ vs DeepLabV3+ alone: mIoU and boundary F-score at 3/5/9/12 px (Tables 1, 10);
- SBCB vs BBCB (the binary boundary head): their mIoU gains over the baseline (Table 4);
- the boundary head's MF-ODS after joint training vs the single-task CASENet detector (Table 1).

    python bench/sbcb_experiments.py                      # every config x seeds 0 1 2 (skips runs already in the JSON)
    python bench/sbcb_experiments.py --configs base sbcb --seeds 0 --epochs 2 --out /tmp/x.json   # a quick look

Each run: `seg_dataloaders('synthetic', size=64x128, bs=8, targets='auto')` on 100 training scenes of 128x256 (a
half-size set, so that 12 runs fit the CPU budget), ResNet-18 at output stride 8 from scratch (no pretrained weights
offline), the `main` recipe without the FCN auxiliary head (AdamW 2e-3, poly, sqrt class weights; the SBCB recipe's SGD
0.01 is tuned for ImageNet-pretrained backbones), `width` 32, `epochs` x 12 steps, then evaluation on the 20 validation
scenes at full resolution: mIoU, boundary F (3, 5, 9, 12 px), and MF-ODS (the Cityscapes "thin" protocol at full
resolution, see PROTOCOL; 33 thresholds) of the `edge` output (the SBCB head kept in eval for this diagnostic: `models.sbcb.boundary_outputs`). Runs are
appended to the JSON one by one, so the script can be stopped and resumed; one process, one thread.
"""
import argparse, json, statistics, tempfile, time
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
# The Cityscapes "thin" protocol at full resolution: on 2048x1024 frames it evaluates at half resolution with a tolerance of
# 0.0035 x the diagonal (4 px there, 0.35% of the frame); on these 128x256 scenes half resolution would leave 0.5 px,
# so they are evaluated at full resolution, where 0.0035 x the diagonal is 1 px
from boundaryseg.metrics.sbd import SBDProtocol  # noqa: E402
PROTOCOL = SBDProtocol('thin', 1.0, 0.0035, True)
CONFIGS = {  # name -> (arch, model options); boundary_head=None overrides the main recipe's own CASENet head
    'base': ('deeplabv3plus', {'boundary_head': None}),
    'sbcb': ('deeplabv3plus', {'boundary_head': 'casenet'}),
    'bbcb': ('deeplabv3plus', {'boundary_head': 'bbcb'}),
    'casenet': ('casenet', {'boundary_head': None}),
}


def run(name, seed, epochs, root, width, threads, image_size, crop):
    from boundaryseg.core import set_seed
    from boundaryseg.data.block import seg_dataloaders
    from boundaryseg.learner import seg_learner
    from boundaryseg.inference import evaluate
    from boundaryseg.models.sbcb import boundary_outputs
    torch.set_num_threads(threads)
    arch, mk = CONFIGS[name]
    set_seed(seed)
    dls = seg_dataloaders('synthetic', root, size=crop, bs=8, seed=seed, targets='auto', n_train=100, n_val=20, image_size=image_size)
    with tempfile.TemporaryDirectory() as d:
        # metrics=[]: scores are computed once at the end (the detectors' per-epoch MF-ODS would double their time)
        learn = seg_learner(dls, arch, backbone='resnet18', recipe='main', aux=False, width=width, path=d, checkpoint=None, metrics=[], **mk)
        t = time.time()
        learn.fit(epochs)
        train_s = time.time() - t
    t = time.time()
    with boundary_outputs(learn.model) as m: res = evaluate(m, dls.valid.dataset.reader, 19, progress=False, thresholds=33, edge_protocol=PROTOCOL)
    out = dict(config=name, seed=seed, epochs=epochs, steps=epochs * len(dls.train), train_s=round(train_s, 1), eval_s=round(time.time() - t, 1))
    if 'miou' in res: out.update(miou=float(res['miou']), acc=float(res['acc']), bf=dict(zip(map(str, res['bf_tols']), map(float, res['bf']))),
                                 iou=[float(v) for v in res['iou']])
    if 'edge' in res:
        e = res['edge']
        out.update(mf_ods=float(e['mf_ods']), mf_ois=float(e['mf_ois']), map=float(e['map']), ods_f=[float(v) for v in e['ods_f']],
                   recall=np.asarray(e['recall']).round(4).tolist(), precision=np.asarray(e['precision']).round(4).tolist())
    return out


def summary(runs):
    "mean, std (n-1) and n of each score per config, and the paired gains over 'base' (same seeds)."
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
        out[c] = s
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--configs', nargs='*', default=list(CONFIGS))
    ap.add_argument('--seeds', nargs='*', type=int, default=[0, 1, 2])
    ap.add_argument('--epochs', type=int, default=15)
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--image_size', type=int, nargs=2, default=[128, 256])
    ap.add_argument('--crop', type=int, nargs=2, default=[64, 128])
    ap.add_argument('--root', default='data/synthetic_128x256')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default=str(HERE/'results'/'sbcb_experiments.json'))
    a = ap.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {'runs': []}
    done = {(r['config'], r['seed'], r['epochs']) for r in data['runs']}
    for seed in a.seeds:
        for c in a.configs:
            if (c, seed, a.epochs) in done: continue
            r = run(c, seed, a.epochs, a.root, a.width, a.threads, tuple(a.image_size), tuple(a.crop))
            data['runs'].append(r)
            data['summary'] = summary([x for x in data['runs'] if x['epochs'] == a.epochs])
            data['setup'] = dict(epochs=a.epochs, width=a.width, crop=a.crop, bs=8, backbone='resnet18', output_stride=8, recipe='main (aux off)',
                                 n_train=100, n_val=20, image_size=a.image_size, sbd_protocol='thin GT (radius 1, thinned), thinned predictions, full resolution, max_dist 0.0035 (1 px)', thresholds=33)
            out.write_text(json.dumps(data, indent=1))
            print(json.dumps({k: v for k, v in r.items() if k not in ('iou', 'ods_f', 'recall', 'precision')}), flush=True)
    print(json.dumps(data.get('summary', {}), indent=1))


if __name__ == '__main__':
    main()
