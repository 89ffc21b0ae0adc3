"""Run the official panoptic evaluators on COCO panoptic files, in the reference interpreter (.venv-ref/bin/python):

    python ref_panoptic.py jobs.json out.json

jobs.json: {"cases": [job, ...]}, each job a dict with "name" and "op":
  - "pq_compute": panopticapi's pq_compute(gt_json, pred_json, gt_folder, pred_folder) (its multi-process driver);
  - "pq_single_core": panopticapi's pq_compute_single_core on all images in this process, then pq_average, as
    pq_compute does it but single-process; with "repeat" (best-of timing) and "preload" (PNGs decoded once before
    timing, so that the time covers the evaluator's computation: its Image.open is served from memory);
  - "cityscapes": cityscapesscripts' evalPanopticSemanticLabeling.evaluatePanoptic (same arguments);
  - "convert_cityscapes": cityscapesscripts' createPanopticImgs.convert2panoptic(gtFine, out_dir, set_names).
Output: {name: result}; results have panopticapi's layout ("All"/"Things"/"Stuff" -> pq, sq, rq, n; "per_class"),
plus "seconds" (time.perf_counter inside this process, interpreter start-up excluded).
"""
import contextlib, io, json, sys, time
from PIL import Image
import panopticapi.evaluation as pe
import cityscapesscripts.evaluation.evalPanopticSemanticLabeling as cspe
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic


class _Preloaded:
    "Stands in for PIL.Image inside the evaluator: `open` returns images decoded beforehand."
    def __init__(self, files):
        self.cache = {f: Image.open(f) for f in files}
        for im in self.cache.values(): im.load()
    def open(self, f): return self.cache[f]


def single_core(job):
    gt_json, pred_json = json.load(open(job['gt_json'])), json.load(open(job['pred_json']))
    categories = {c['id']: c for c in gt_json['categories']}
    preds = {a['image_id']: a for a in pred_json['annotations']}
    matched = [(a, preds[a['image_id']]) for a in gt_json['annotations']]
    orig = pe.Image
    if job.get('preload'):
        pe.Image = _Preloaded([f"{job['gt_folder']}/{g['file_name']}" for g, _ in matched] +
                              [f"{job['pred_folder']}/{p['file_name']}" for _, p in matched])
    best = float('inf')
    try:
        for _ in range(int(job.get('repeat', 1))):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                stat = pe.pq_compute_single_core(0, matched, job['gt_folder'], job['pred_folder'], categories)
                res = {}
                for name, isthing in (('All', None), ('Things', True), ('Stuff', False)):
                    res[name], per_class = stat.pq_average(categories, isthing=isthing)
                    if name == 'All': res['per_class'] = per_class
            best = min(best, time.perf_counter() - t0)
    finally:
        pe.Image = orig
    res['seconds'] = best
    return res


def run(job):
    op = job['op']
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if op == 'pq_compute':
            res = pe.pq_compute(job['gt_json'], job['pred_json'], job['gt_folder'], job['pred_folder'])
        elif op == 'cityscapes':
            res = cspe.evaluatePanoptic(job['gt_json'], job['gt_folder'], job['pred_json'], job['pred_folder'], job['results_file'])
        elif op == 'convert_cityscapes':
            convert2panoptic(job['gtFine'], job['out_dir'], False, job.get('set_names', ['val']))
            res = {}
        elif op == 'pq_single_core':
            return single_core(job)
        else:
            raise ValueError(f'unknown op {op}')
    res['seconds'] = time.perf_counter() - t0
    return res


if __name__ == '__main__':
    jobs = json.load(open(sys.argv[1]))['cases']
    out = {}
    for j in jobs: out[j['name']] = run(j)
    json.dump(out, open(sys.argv[2], 'w'), default=float)
