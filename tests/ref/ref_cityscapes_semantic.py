"""Run cityscapesscripts' pixel-level evaluator (evalPixelLevelSemanticLabeling.evaluateImgLists) on PNG files.

Run by the reference interpreter (.venv-ref/bin/python), never imported by the library:

    python ref_cityscapes_semantic.py cases.json out.json

cases.json: {"cases": [{"name": str, "pred": [labelId PNG, ...], "gt": [*_gtFine_labelIds.png, ...],
                        "inst": true, "repeat": 1, "preload": false}, ...]}
`inst` turns the instance-level (iIoU) part on (it reads the *_gtFine_instanceIds.png next to each GT file).
`preload` reads every PNG once before the timed runs, so the timing covers the evaluator's computation only
(its `Image.open` is then served from memory). The time of each case is the best of `repeat` runs of
`evaluateImgLists`, measured with time.perf_counter inside this process (interpreter start-up excluded).
out.json: {name: {"classScores", "classInstScores", "averageScoreClasses", "averageScoreInstClasses",
                  "confMatrix", "seconds"}}; NaN is written as NaN.
"""
import copy, json, sys, time
import numpy as np
from PIL import Image
import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as ev


class _Preloaded:
    "Stands in for PIL.Image inside the evaluator: `open` returns images decoded beforehand."
    def __init__(self, files): self.cache = {f: Image.open(f) for f in files}; [im.load() for im in self.cache.values()]
    def open(self, f): return self.cache[f]


def run(case):
    args = copy.copy(ev.args)
    args.quiet, args.JSONOutput, args.evalPixelAccuracy = True, False, False
    args.evalInstLevelScore = bool(case.get('inst', True))
    pred, gt = case['pred'], case['gt']
    orig = ev.Image
    if case.get('preload'):
        files = pred + gt + ([g.replace('labelIds', 'instanceIds') for g in gt] if args.evalInstLevelScore else [])
        ev.Image = _Preloaded(files)
    best, res = float('inf'), None
    try:
        for _ in range(int(case.get('repeat', 1))):
            t0 = time.perf_counter()
            res = ev.evaluateImgLists(pred, gt, args)
            best = min(best, time.perf_counter() - t0)
    finally:
        ev.Image = orig
    keep = ('classScores', 'classInstScores', 'averageScoreClasses', 'averageScoreInstClasses', 'confMatrix')
    out = {k: res[k] for k in keep}
    out['seconds'] = best
    return out


if __name__ == '__main__':
    cases = json.load(open(sys.argv[1]))['cases']
    json.dump({c['name']: run(c) for c in cases}, open(sys.argv[2], 'w'))
