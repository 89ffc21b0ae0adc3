"""An independent semantic Boundary IoU reference: per image, per class, one distance transform per mask.

Imported by tests/test_boundary_iou.py and bench/bench_biou.py (numpy + scipy only, any interpreter). For each image and
each class present in the ground truth or the prediction, the masks G = [gt == c] and P = [pred == c] are cut to the
evaluated pixels (gt != ignore), padded with one ring of background (the image border is a contour), and their
chessboard distance transforms give the bands: the mask pixels at distance <= d from the nearest non-mask pixel.
Counts per width and class: |band(G)|, |band(P)|, |band(G) & band(P)|, summed over images.
"""
import numpy as np
from scipy import ndimage


def width_px(w, H, W):
    return int(w) if w >= 1 else max(1, int(round(w * np.sqrt(H * H + W * W))))


def ref_biou_counts(preds, gts, C, widths, ignore=255):
    "(D,C,3) int64 counts of (pred, gt) pairs of (H,W) class maps."
    out = np.zeros((len(widths), C, 3), np.int64)
    for p, g in zip(preds, gts):
        p, g = np.asarray(p), np.asarray(g)
        valid = g != ignore
        ds = [width_px(w, *g.shape) for w in widths]
        for c in np.union1d(np.unique(g[valid]), np.unique(p[valid])):
            if c >= C: continue  # "no class" predictions
            G, P = (g == c) & valid, (p == c) & valid
            dg = ndimage.distance_transform_cdt(np.pad(G, 1), metric='chessboard')[1:-1, 1:-1]
            dp = ndimage.distance_transform_cdt(np.pad(P, 1), metric='chessboard')[1:-1, 1:-1]
            for k, d in enumerate(ds):
                bg, bp = G & (dg <= d), P & (dp <= d)
                out[k, c] += bg.sum(), bp.sum(), (bg & bp).sum()
    return out
