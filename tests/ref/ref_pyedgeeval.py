"""Run pyEdgeEval (the reference SBD evaluator) on arrays written by the tests and the bench.

Runs in the isolated reference environment (`.venv-ref/bin/python`); the library never imports pyEdgeEval.
Usage: `python ref_pyedgeeval.py task.json`. The task names an `op` and its inputs (.npy files or Cityscapes
label PNGs); results go to the `.npy` / `.json` paths the task names, never to stdout (pyEdgeEval prints progress bars).

ops
- `gt`: Cityscapes semantic-boundary GT the official way (`helpers.convert_cityscapes.convert_label_to_semantic_edges`
  writes the RGB-encoded PNG, the evaluators read it back with `load_scaled_edge` + `decode_png`): (19,H,W) uint8.
- `eval`: per image and class, `evaluate_boundaries_threshold` on arrays (pred (N,K,H,W) float, gt (N,K,H,W),
  optional seg (N,H,W) train ids for `kill_internal`), aggregated with `calculate_metrics`; writes the per-image
  counts (N,K,T,4: cntR, sumR, cntP, sumP), the per-class metrics, the wall time and this process's CPU time. The prediction is read as
  float64 (what the evaluators make of a PNG) unless `keep_dtype`; `border` > 0 clears that ring of the prediction
  first with `add_ignore_pixel`, as the SBD evaluator (`datasets/sbd.py`) does before NMS and thresholds.
- `thin`: `preprocess.binary_thin` on each (H,W) slice of a stack.
- `nms`: `preprocess.fast_nms` on each (H,W) slice of a stack, in float64 unless `keep_dtype` (float32 stays float32).
"""
import json, os, shutil, sys, tempfile, time
from multiprocessing import Pool

import numpy as np
from PIL import Image

from pyEdgeEval.common.multi_label import add_ignore_pixel, calculate_metrics, decode_png, evaluate_boundaries_threshold, load_scaled_edge
from pyEdgeEval.common.utils import check_thresholds
from pyEdgeEval.helpers.convert_cityscapes import convert_label_to_semantic_edges
from pyEdgeEval.preprocess import binary_thin, fast_nms

NMS_KW = dict(r=1, s=5, m=1.01, half_prec=False)  # what the dataset evaluators pass


def op_gt(t):
    "Convert one labelIds (+ instanceIds) PNG pair to multi-label edges and load them as the evaluators do."
    tmp = tempfile.mkdtemp()
    try:
        d = os.path.join(tmp, 'gtFine', 'val', 'city')
        os.makedirs(d)
        shutil.copy(t['label'], os.path.join(d, 'x_gtFine_labelIds.png'))
        if t.get('inst'): shutil.copy(t['inst'], os.path.join(d, 'x_gtFine_instanceIds.png'))
        convert_label_to_semantic_edges(os.path.join(d, 'x_gtFine_labelIds.png'), inst_sensitive=bool(t.get('inst')),
                                        edge_suffix='_edge.png', radius=t['radius'], thin=t['thin'], scale=t['convert_scale'])
        edge, _ = load_scaled_edge(os.path.join(tmp, 'gtEval', 'val', 'city', 'x_edge.png'), t['eval_scale'])
        np.save(t['out'], decode_png(edge, 19))
    finally:
        shutil.rmtree(tmp)


def _eval_one(s):
    pred, gt = np.load(s['pred'], mmap_mode='r'), np.load(s['gt'], mmap_mode='r')
    seg = np.load(s['seg'], mmap_mode='r')[s['i']] == s['k'] if s['seg'] else None
    p = np.array(pred[s['i'], s['k']], dtype=None if s.get('keep_dtype') else np.float64)
    if s.get('border'): p = add_ignore_pixel(p, border_px=s['border'], ignore_id=0)
    return evaluate_boundaries_threshold(
        thresholds=check_thresholds(s['thresholds']), pred=p,
        gt=np.array(gt[s['i'], s['k']]), gt_seg=seg, max_dist=s['max_dist'], apply_thinning=s['apply_thinning'],
        kill_internal=s['kill_internal'], skip_if_nonexistent=s['skip_if_nonexistent'], apply_nms=s['apply_nms'],
        nms_kwargs=NMS_KW)


def op_eval(t):
    n, k = np.load(t['pred'], mmap_mode='r').shape[:2]
    keys = ('pred', 'gt', 'thresholds', 'max_dist', 'apply_thinning', 'kill_internal', 'skip_if_nonexistent', 'apply_nms', 'keep_dtype', 'border')
    samples = [dict({x: t.get(x) for x in keys}, seg=t.get('seg'), i=i, k=c, name=str(i)) for c in range(k) for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    if t.get('nproc', 1) > 1:
        with Pool(t['nproc']) as p: counts = p.map(_eval_one, samples, chunksize=1)
    else: counts = [_eval_one(s) for s in samples]
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0  # cpu: this process only (the work itself when nproc == 1)
    counts = np.array(counts, dtype=np.float64).reshape(k, n, 4, -1).transpose(1, 0, 3, 2)  # (N,K,T,4)
    per_class = []
    for c in range(k):  # the official aggregation, fed the counts computed above
        res = iter([tuple(counts[i, c, :, j] for j in range(4)) for i in range(n)])
        _, thr, overall = calculate_metrics(lambda s: next(res), t['thresholds'], [dict(name=str(i)) for i in range(n)], nproc=1)
        overall.update(recall=[r['recall'] for r in thr], precision=[r['precision'] for r in thr])
        per_class.append({a: np.asarray(b).tolist() for a, b in overall.items()})
    np.save(t['out_counts'], counts)
    with open(t['out'], 'w') as f: json.dump(dict(per_class=per_class, seconds=secs, cpu_seconds=cpu), f)


def op_thin(t):
    x = np.load(t['x'])
    np.save(t['out'], np.stack([binary_thin(a) for a in x.reshape(-1, *x.shape[-2:])]).reshape(x.shape))


def op_nms(t):
    x = np.load(t['x'])
    if not t.get('keep_dtype'): x = x.astype(np.float64)
    np.save(t['out'], np.stack([fast_nms(a, **NMS_KW) for a in x.reshape(-1, *x.shape[-2:])]).reshape(x.shape))


if __name__ == '__main__':
    with open(sys.argv[1]) as f: task = json.load(f)
    dict(gt=op_gt, eval=op_eval, thin=op_thin, nms=op_nms)[task['op']](task)
