"""Speed of our mIoU / iIoU counting vs cityscapesscripts' evaluator (evalPixelLevelSemanticLabeling), same inputs.

Inputs: 1024x2048 frames, 19 classes: the real HRNet+OCR full-resolution predictions of the fixtures against the
real Cityscapes fixture ground truth (labelIds + instanceIds) upsampled 8x; `--n` pairs (each pair a prediction
rolled by a few pixels so pairs differ). They are written once as PNGs in a Cityscapes-like layout.

Timing. The reference needs the old numpy of .venv-ref, so it runs in that interpreter (tests/ref/ref_cityscapes_semantic.py)
and times itself with time.perf_counter around `evaluateImgLists` (interpreter start-up and imports excluded).
Ours is timed the same way in this process. Both: best of `--rounds` x `--repeat` runs (reference and ours alternate by round), one thread (torch.set_num_threads(1);
the reference is single-threaded numpy). Three comparisons:
  - counts only, mIoU: the reference with evalInstLevelScore=False and its PNGs decoded beforehand (its Image.open
    served from memory) vs our `confusion_matrix` on the decoded train-id arrays;
  - counts only, mIoU + iIoU: the same with instance counting on both sides;
  - from files: both read the PNGs (ours: load_ids + CITYSCAPES.encode + counts) and compute mIoU + iIoU.
Results must be equal (checked); the ratio is reference time / our time.
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
from boundaryseg.core import load_ids, fixtures_path, save_png
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.metrics.semantic import SegMetrics, confusion_matrix, instance_counts, cityscapes_avg_class_size, seg_scores

ROOT = Path(__file__).resolve().parents[1]
REF_PY = ROOT/'.venv-ref'/'bin'/'python'


def best(f, repeat):
    t = float('inf')
    for _ in range(repeat):
        t0 = time.perf_counter(); r = f(); t = min(t, time.perf_counter() - t0)
    return t, r


def make_inputs(d, n):
    fx = fixtures_path()
    gt_dir = fx/'cityscapes'/'gtFine'/'val'/'frankfurt'
    lbl = load_ids(gt_dir/'frankfurt_000000_000294_gtFine_labelIds.png')
    inst = load_ids(gt_dir/'frankfurt_000000_000294_gtFine_instanceIds.png')
    up = lambda a: np.repeat(np.repeat(a, 8, 0), 8, 1)
    lbl, inst = up(lbl), up(inst)
    hr = [load_ids(fx/'cityscapes_fullres_predictions'/'frankfurt'/f'frankfurt_000000_{f}_pred_labelIds.png') for f in ('000294', '002196')]
    (d/'gt').mkdir(); (d/'pred').mkdir()
    preds, gts = [], []
    for k in range(n):
        frame = f'frankfurt_{k:06d}_{k:06d}'
        save_png(lbl, d/'gt'/f'{frame}_gtFine_labelIds.png')
        save_png(inst, d/'gt'/f'{frame}_gtFine_instanceIds.png')
        save_png(np.roll(hr[k % 2], 3 * (k // 2), 1), d/'pred'/f'{frame}_pred_labelIds.png')
        gts.append(str(d/'gt'/f'{frame}_gtFine_labelIds.png')); preds.append(str(d/'pred'/f'{frame}_pred_labelIds.png'))
    return preds, gts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=4, help='image pairs (1024x2048)')
    ap.add_argument('--repeat', type=int, default=3, help='best of this many runs per round')
    ap.add_argument('--rounds', type=int, default=2, help='alternating rounds of reference and ours')
    args = ap.parse_args()
    torch.set_num_threads(1)
    avg = cityscapes_avg_class_size()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        preds, gts = make_inputs(d, args.n)
        cases = [dict(name='miou', pred=preds, gt=gts, inst=False, preload=True, repeat=args.repeat),
                 dict(name='miou_iiou', pred=preds, gt=gts, inst=True, preload=True, repeat=args.repeat),
                 dict(name='files', pred=preds, gt=gts, inst=True, preload=False, repeat=args.repeat)]
        (d/'cases.json').write_text(json.dumps({'cases': cases}))

        P = [torch.from_numpy(CITYSCAPES.encode(load_ids(p))) for p in preds]
        G = [torch.from_numpy(CITYSCAPES.encode(load_ids(g))) for g in gts]
        I = [torch.from_numpy(load_ids(g.replace('labelIds', 'instanceIds'))) for g in gts]

        def counts(with_inst):
            sm = SegMetrics(19, avg_class_size=avg if with_inst else None, min_inst=1001)
            for k in range(len(P)): sm.update(P[k], G[k], I[k] if with_inst else None)
            return sm.scores()

        def from_files():
            sm = SegMetrics(19, avg_class_size=avg, min_inst=1001)
            for p, g in zip(preds, gts):
                sm.update(torch.from_numpy(CITYSCAPES.encode(load_ids(p))), torch.from_numpy(CITYSCAPES.encode(load_ids(g))),
                          torch.from_numpy(load_ids(g.replace('labelIds', 'instanceIds'))))
            return sm.scores()

        ours, ref = {}, {}
        for _ in range(args.rounds):  # alternate reference and ours, keep the best of each: less exposed to load changes
            subprocess.run([str(REF_PY), str(ROOT/'tests'/'ref'/'ref_cityscapes_semantic.py'), str(d/'cases.json'), str(d/'out.json')], check=True)
            for name, r in json.loads((d/'out.json').read_text()).items():
                if name not in ref or r['seconds'] < ref[name]['seconds']: ref[name] = r
            for name, f in (('miou', lambda: counts(False)), ('miou_iiou', lambda: counts(True)), ('files', from_files)):
                t, s = best(f, args.repeat)
                if name not in ours or t < ours[name][0]: ours[name] = (t, s)
    rows, diff = [], 0.
    for name, what in (('miou', 'counts only, mIoU'), ('miou_iiou', 'counts only, mIoU + iIoU'), ('files', 'from PNG files, mIoU + iIoU')):
        t, s = ours[name]
        diff = max(diff, abs(s['miou'] - ref[name]['averageScoreClasses']))
        if 'miiou' in s: diff = max(diff, abs(s['miiou'] - ref[name]['averageScoreInstClasses']))
        rows.append(dict(case=what, ours_s=t, cityscapesscripts_s=ref[name]['seconds'], ratio=ref[name]['seconds'] / t))
    assert diff < 1e-9, f'results differ from cityscapesscripts by {diff}'
    print(f"mIoU / iIoU: {args.n} pairs of 1024x2048, 19 classes, best of {args.rounds}x{args.repeat}, 1 thread; max |ours - ref| = {diff:.1e}")
    print(f"| {'case':<30} | {'ours (s)':>9} | {'cityscapesscripts (s)':>21} | {'ratio':>6} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 23}|{'-' * 8}|")
    for r in rows: print(f"| {r['case']:<30} | {r['ours_s']:9.4f} | {r['cityscapesscripts_s']:21.4f} | {r['ratio']:5.1f}x |")
    out = ROOT/'bench'/'out'
    out.mkdir(parents=True, exist_ok=True)
    (out/'bench_miou.json').write_text(json.dumps(dict(n=args.n, size=[1024, 2048], classes=19, repeat=args.repeat, rounds=args.rounds, threads=1,
                                                       max_abs_diff=diff, rows=rows), indent=1))


if __name__ == '__main__':
    main()
