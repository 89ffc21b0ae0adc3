"""Boundary IoU references, in the reference interpreter (.venv-ref/bin/python, which has OpenCV and faster-coco-eval):

    python ref_biou.py jobs.json out.json

jobs.json: {"cases": [job, ...]}, each job a dict with "name" and "op":
  - "api_band": {"npz": file with arrays m0, m1, ... (binary masks), "widths": [...]} -> per mask and width, the flat
    indices of the band as boundary-iou-api's `mask_to_boundary` defines it: pad one ring of zeros, `cv2.erode` with a
    3x3 square `d` times, subtract (d = the width in pixels, or max(1, round(ratio * diagonal)) for a ratio < 1);
  - "d2_semseg": {"npz": file with arrays pred, gt, "C", "ratio"} -> per-class "BoundaryIoU" as detectron2's
    SemSegEvaluator computes it (ignore 255 -> C; the api's erosion applied to the whole uint8 label map; the
    differences `label - eroded` binned like classes into a confusion matrix);
  - "coco_boundary": {"gt_json", "dt_json", "ratio"} -> faster-coco-eval's COCOeval_faster(iouType='boundary') stats;
  - "bpq": {"npz": file with gt0, pred0, gt1, ... (dense segment maps), "segs": [[gt_segments, pred_segments], ...],
    "categories", "ratio"} -> per-category [iou_sum, tp, fp, fn] of Boundary PQ, following boundary-iou-api's
    `pq_compute_single_core(..., iou_type='boundary')` procedure (a per-segment loop; written here, not copied).
Output: {name: result}.
"""
import json, sys, contextlib, io
import numpy as np
import cv2


def ratio_to_d(w, H, W):
    return int(w) if w >= 1 else max(1, int(round(w * np.sqrt(H ** 2 + W ** 2))))


def api_band(mask, d):
    "boundary-iou-api's mask_to_boundary with the dilation given in pixels."
    h, w = mask.shape
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return mask.astype(np.uint8) - eroded


def d2_semseg(pred, gt, C, ratio):
    gt = gt.astype(np.int64).copy(); gt[gt == 255] = C
    def boundary(m):
        h, w = m.shape
        d = max(1, int(round(ratio * np.sqrt(h ** 2 + w ** 2))))
        padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        return m - cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
    bg, bp = boundary(gt.astype(np.uint8)), boundary(pred.astype(np.uint8))
    cm = np.bincount((C + 1) * bp.reshape(-1).astype(np.int64) + bg.reshape(-1), minlength=(C + 1) ** 2).reshape(C + 1, C + 1)
    tp = cm.diagonal()[:-1].astype(float)
    g, p = cm[:-1, :-1].sum(0).astype(float), cm[:-1, :-1].sum(1).astype(float)
    u = g + p - tp
    return [float(t / v) if v > 0 else None for t, v in zip(tp, u)]


def coco_boundary(job):
    from faster_coco_eval import COCO, COCOeval_faster
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(job['gt_json'])
        dt = gt.loadRes(job['dt_json'])
        ev = COCOeval_faster(gt, dt, 'boundary', boundary_dilation_ratio=job['ratio'], print_function=lambda *a, **k: None,
                             boundary_cpu_count=1)
        ev.evaluate(); ev.accumulate(); ev.summarize()
    return [float(v) for v in ev.stats[:6]]


def bpq_image(gt, pred, gsegs, psegs, cat_ids, ratio):
    "Boundary PQ counts of one image, segment by segment as the api's procedure goes."
    H, W = gt.shape
    d = ratio_to_d(ratio, H, W)
    stats = {c: [0.0, 0, 0, 0] for c in cat_ids}
    BID = max(max([s['id'] for s in gsegs], default=0), max([s['id'] for s in psegs], default=0)) + 1
    def boundaries(pan, segs):
        b, area, barea = pan.copy(), {}, {}
        for s in segs:
            m = pan == s['id']
            band = api_band(m, d) > 0
            b[m] = BID; b[band] = s['id']
            area[s['id']], barea[s['id']] = int(m.sum()), int(band.sum())
        return b, area, barea
    gb, garea, gbarea = boundaries(gt, gsegs)
    pb, parea, pbarea = boundaries(pred, psegs)
    def pairs(a, b):
        k, n = np.unique(a.astype(np.int64) * (BID + 1) + b, return_counts=True)
        return {(int(x // (BID + 1)), int(x % (BID + 1))): int(c) for x, c in zip(k, n)}
    inter, binter = pairs(gt, pred), pairs(gb, pb)
    gs, ps = {s['id']: s for s in gsegs}, {s['id']: s for s in psegs}
    gm, pm = set(), set()
    for (g, p), n in inter.items():
        if g not in gs or p not in ps or gs[g].get('iscrowd', 0) == 1 or gs[g]['category_id'] != ps[p]['category_id']: continue
        iou = n / (parea[p] + garea[g] - n - inter.get((0, p), 0))
        bi = binter.get((g, p), 0)
        biou = bi / (pbarea[p] + gbarea[g] - bi - binter.get((0, p), 0))
        iou = min(iou, biou)
        if iou > 0.5:
            st = stats[gs[g]['category_id']]; st[1] += 1; st[0] += iou
            gm.add(g); pm.add(p)
    crowd = {}
    for g, s in gs.items():
        if g in gm: continue
        if s.get('iscrowd', 0) == 1: crowd[s['category_id']] = g; continue
        stats[s['category_id']][3] += 1
    for p, s in ps.items():
        if p in pm: continue
        on = inter.get((0, p), 0) + (inter.get((crowd[s['category_id']], p), 0) if s['category_id'] in crowd else 0)
        if on / parea[p] > 0.5: continue
        stats[s['category_id']][2] += 1
    return stats


def run(job):
    op = job['op']
    if op == 'api_band':
        z = np.load(job['npz'])
        out = []
        for k in range(len(z.files)):
            m = z[f'm{k}']
            out.append([np.flatnonzero(api_band(m, ratio_to_d(w, *m.shape))).tolist() for w in job['widths']])
        return out
    if op == 'd2_semseg':
        z = np.load(job['npz'])
        return d2_semseg(z['pred'], z['gt'], job['C'], job['ratio'])
    if op == 'coco_boundary': return coco_boundary(job)
    if op == 'bpq':
        z = np.load(job['npz'])
        cat_ids = [c['id'] for c in job['categories']]
        tot = {c: [0.0, 0, 0, 0] for c in cat_ids}
        for k, (gsegs, psegs) in enumerate(job['segs']):
            st = bpq_image(z[f'gt{k}'], z[f'pred{k}'], gsegs, psegs, cat_ids, job['ratio'])
            for c in cat_ids: tot[c] = [a + b for a, b in zip(tot[c], st[c])]
        return [tot[c] for c in cat_ids]
    raise ValueError(f"unknown op {op!r}")


if __name__ == '__main__':
    jobs = json.load(open(sys.argv[1]))
    json.dump({j['name']: run(j) for j in jobs['cases']}, open(sys.argv[2], 'w'))
