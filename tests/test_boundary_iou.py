"""Boundary IoU (metrics.boundary_iou): semantic counts vs an independent per-class distance-transform reference (random
and real Cityscapes maps), the band vs boundary-iou-api's OpenCV erosion, detectron2's semantic version measured on
cases, Boundary AP vs faster-coco-eval's boundary IoU type, Boundary PQ vs the api's per-segment procedure, and a
two-process (gloo) run of the fastai metric."""
import json, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from boundaryseg.core import load_ids, fixtures_path
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.metrics.boundary_iou import (biou_counts, biou_scores, mask_boundary, BIoUMetrics, BoundaryPanopticMetrics, boundary_ap,
                                              bpq_stats, band_width)
from boundaryseg.metrics.panoptic import panoptic_instances, sem_inst_to_panoptic, coco_mask_ap
from conftest import ref_run, run_gloo, feed_views
from test_metrics_panoptic import perturb_coco, coco_gt

sys.path.insert(0, str(Path(__file__).resolve().parent/'ref'))
from ref_biou_dt import ref_biou_counts  # noqa: E402

FX = fixtures_path()
CS_GT = FX/'cityscapes'/'gtFine'/'val'/'frankfurt'
CS_PRED = FX/'cityscapes_fullres_predictions'/'frankfurt'


def up8(a): return np.repeat(np.repeat(a, 8, 0), 8, 1)


def cityscapes_pairs():
    "The fixture frame's GT (256x128) against the HRNet+OCR prediction downsampled; and at 1024x2048, the GT upsampled 8x against the full-resolution predictions."
    gt = CITYSCAPES.encode(load_ids(CS_GT/'frankfurt_000000_000294_gtFine_labelIds.png'))
    hr = [CITYSCAPES.encode(load_ids(CS_PRED/f'frankfurt_000000_{f}_pred_labelIds.png')) for f in ('000294', '002196')]
    H, W = gt.shape
    small = hr[0][((np.arange(H) + 0.5) * 8).astype(int)][:, ((np.arange(W) + 0.5) * 8).astype(int)]
    return (small, gt), [(hr[0], up8(gt)), (hr[1], np.roll(hr[0], (5, -9), (0, 1)))]


# ---------------------------------------------------------------- semantic: the distance-transform reference
def random_case(rng):
    H, W = int(rng.integers(1, 40)), int(rng.integers(1, 50))
    C, B = int(rng.integers(2, 7)), int(rng.integers(1, 4))
    k = int(rng.integers(1, 5))
    g = rng.integers(0, C, (B, -(-H // k), -(-W // k))).repeat(k, 1).repeat(k, 2)[:, :H, :W]
    p = np.where(rng.random((B, H, W)) < 0.15, rng.integers(0, C, (B, H, W)), np.roll(g, int(rng.integers(-2, 3)), 2))
    g[rng.random(g.shape) < rng.uniform(0, 0.2)] = 255
    p[rng.random(p.shape) < 0.03] = 255  # "no class"
    widths = tuple(rng.choice([1, 2, 3, 5, 8, 0.02, 0.1], int(rng.integers(1, 4)), replace=False).tolist())
    return p, g, C, widths


def test_semantic_equals_distance_transform_reference_on_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(150):
        p, g, C, widths = random_case(rng)
        np.testing.assert_array_equal(biou_counts(p, g, C, widths), ref_biou_counts(p, g, C, widths))


def test_semantic_equals_distance_transform_reference_on_cityscapes():
    small, full = cityscapes_pairs()
    widths = (1, 3, 5, 12, 0.005, 0.02)
    np.testing.assert_array_equal(biou_counts(*small, 19, widths), ref_biou_counts([small[0]], [small[1]], 19, widths))
    p, g = np.stack([f[0] for f in full]), np.stack([f[1] for f in full])
    got = biou_counts(torch.from_numpy(p), torch.from_numpy(g), 19, widths)
    np.testing.assert_array_equal(got, ref_biou_counts(p, g, 19, widths))
    m = biou_scores(got)['mbiou']
    assert ((0 < m) & (m < 1)).all() and (np.diff(m[:4]) > 0).all()  # wider bands forgive more


def test_logits_and_class_maps_count_alike():
    rng = np.random.default_rng(1)
    p, g, C, widths = random_case(rng)
    p = np.where(p == 255, 0, p)
    logits = torch.nn.functional.one_hot(torch.from_numpy(p).long(), C).permute(0, 3, 1, 2).float()
    np.testing.assert_array_equal(biou_counts(logits, g, C, widths), biou_counts(p, g, C, widths))


# ---------------------------------------------------------------- the band: boundary-iou-api's OpenCV erosion
def test_band_equals_boundary_iou_api_erosion(tmp_path):
    rng = np.random.default_rng(2)
    from scipy import ndimage
    masks = [ndimage.binary_opening(rng.random((int(rng.integers(5, 70)), int(rng.integers(5, 90)))) < 0.6) for _ in range(12)]
    line = np.zeros((20, 30), bool); line[7, 3:25] = True; line[2:18, 12] = True  # 1-pixel-wide structures
    edge = np.zeros((20, 30), bool); edge[:, :9] = True; edge[12:, :] = True     # cut by the image border
    gt = CITYSCAPES.encode(load_ids(CS_GT/'frankfurt_000000_000294_gtFine_labelIds.png'))
    masks += [line, edge, np.ones((9, 13), bool), np.zeros((9, 13), bool)] + [gt == c for c in np.unique(gt) if c < 19]
    widths = [1, 2, 3, 7, 0.02, 0.005]
    np.savez(tmp_path/'masks.npz', **{f'm{k}': m.astype(np.uint8) for k, m in enumerate(masks)})
    ref = ref_run('ref_biou.py', {'cases': [dict(name='band', op='api_band', npz=str(tmp_path/'masks.npz'), widths=widths)]}, tmp_path)['band']
    for m, r in zip(masks, ref):
        for w, idx in zip(widths, r): np.testing.assert_array_equal(np.flatnonzero(mask_boundary(m, w)), idx)


# ---------------------------------------------------------------- detectron2's semantic version, measured
def test_detectron2_semantic_boundary_iou_is_another_quantity(tmp_path):
    g = np.full((64, 64), 2, np.uint8); g[:, 32:] = 5
    p = np.full((64, 64), 2, np.uint8); p[:, 34:] = 5   # the class border 2 columns off
    small, _ = cityscapes_pairs()
    np.savez(tmp_path/'touch.npz', pred=p, gt=g); np.savez(tmp_path/'cs.npz', pred=small[0], gt=small[1])
    ref = ref_run('ref_biou.py', {'cases': [dict(name='touch', op='d2_semseg', npz=str(tmp_path/'touch.npz'), C=8, ratio=0.02),
                                            dict(name='cs', op='d2_semseg', npz=str(tmp_path/'cs.npz'), C=19, ratio=0.02)]}, tmp_path)
    ours = biou_scores(biou_counts(p, g, 8, (0.02,)))['biou_class'][0]
    d2 = np.array([np.nan if v is None else v for v in ref['touch']])
    print('\ntouching classes, d = 2 px: ours', np.round(ours, 4).tolist(), '\n  detectron2', np.round(d2, 4).tolist())
    # ours: class 2 loses the 2 columns it does not predict: GT band 2x(64+..)...; detectron2 scores classes 0 and 3,
    # which are in neither map, and gives class 2 and 5 (only their frame bands) almost 1
    np.testing.assert_array_equal(np.flatnonzero(~np.isnan(ours)), [2, 5])
    np.testing.assert_array_equal(np.flatnonzero(~np.isnan(d2)), [0, 2, 3, 5])
    assert ours[2] < 0.55 and d2[2] > 0.95 and d2[3] == 0
    cs_ours = biou_scores(biou_counts(*small, 19, (0.02,)))
    cs_d2 = np.array([np.nan if v is None else v for v in ref['cs']])
    print(f"Cityscapes fixture (256x128, d = 6 px): mBIoU ours {cs_ours['mbiou'][0]:.4f}, detectron2's mean {np.nanmean(cs_d2):.4f}; "
          f"classes scored: ours {np.flatnonzero(~np.isnan(cs_ours['biou_class'][0])).tolist()}, detectron2 {np.flatnonzero(~np.isnan(cs_d2)).tolist()}")
    assert not np.allclose(np.nan_to_num(cs_d2), np.nan_to_num(cs_ours['biou_class'][0]))


# ---------------------------------------------------------------- Boundary AP vs faster-coco-eval
def _shrink_grow(m, rng):
    from scipy import ndimage
    k = int(rng.integers(-2, 3))
    if k > 0: m = ndimage.binary_dilation(m, iterations=k)
    elif k < 0: m = ndimage.binary_erosion(m, iterations=-k)
    return np.roll(m, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), (0, 1))


def fake_detections(inst, rng, H, W):
    "Detections made from ground-truth instances: moved, grown or shrunk, some dropped, plus random false positives."
    masks, labels = [], []
    for m, c, crowd in zip(inst['masks'], inst['labels'], inst['iscrowd']):
        if rng.random() < 0.2: continue
        m = _shrink_grow(m, rng)
        if m.any(): masks.append(m); labels.append(c)
    for _ in range(int(rng.integers(1, 4))):
        m = np.zeros((H, W), bool)
        y, x = int(rng.integers(0, H - 8)), int(rng.integers(0, W - 8))
        m[y:y + int(rng.integers(4, 60)), x:x + int(rng.integers(4, 60))] = True
        masks.append(m); labels.append(rng.choice(inst['labels']) if len(inst['labels']) else 1)
    return dict(masks=np.stack(masks), labels=np.array(labels, np.int64), scores=rng.random(len(masks)))


def coco_files(gts, preds, categories, d):
    "The COCO json files of `coco_mask_ap`'s ground truth and detections, for faster-coco-eval."
    from boundaryseg.metrics.panoptic import panoptic_categories
    ids, isthing, _ = panoptic_categories(categories)
    enc = lambda m: dict(mask_util.encode(np.asfortranarray(m.astype(np.uint8))), counts=None)
    images, anns, dets = [], [], []
    for i, ((pan, segs), pr) in enumerate(zip(gts, preds)):
        inst = panoptic_instances(pan, segs, categories)
        images.append(dict(id=i, height=int(pan.shape[0]), width=int(pan.shape[1])))
        for m, c, crowd in zip(inst['masks'], inst['labels'], inst['iscrowd']):
            r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append(dict(id=len(anns) + 1, image_id=i, category_id=int(c), iscrowd=int(crowd), area=float(mask_util.area(r)),
                             bbox=mask_util.toBbox(r).tolist(), segmentation=dict(size=r['size'], counts=r['counts'].decode())))
        for m, c, s in zip(pr['masks'], pr['labels'], pr['scores']):
            r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            dets.append(dict(image_id=i, category_id=int(c), score=float(s), segmentation=dict(size=r['size'], counts=r['counts'].decode())))
    cats = [dict(id=int(c), name=str(c)) for c in ids[isthing]]
    (d/'gt.json').write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))
    (d/'dt.json').write_text(json.dumps(dets))
    return str(d/'gt.json'), str(d/'dt.json')


def ap_datasets():
    gj, pans = coco_gt()
    coco = ([(p, a['segments_info']) for p, a in zip(pans, gj['annotations'])], gj['categories'])
    sem = CITYSCAPES.encode(load_ids(CS_GT/'frankfurt_000000_000294_gtFine_labelIds.png'))
    inst = load_ids(CS_GT/'frankfurt_000000_000294_gtFine_instanceIds.png').astype(np.int64)
    pan = sem_inst_to_panoptic(sem, inst, CITYSCAPES, min_inst=1000)
    cs = ([pan, (up8(pan[0]), pan[1])], [dict(id=i, isthing=int(t)) for i, t in enumerate(CITYSCAPES.thing)])
    return dict(coco=coco, cityscapes=cs)


@pytest.mark.parametrize('ratio', [0.02, 0.005])
def test_boundary_ap_equals_faster_coco_eval(tmp_path, ratio):
    cases, ours = [], {}
    for name, (gts, cats) in ap_datasets().items():
        for seed in range(3):
            rng = np.random.default_rng(seed)
            preds = [fake_detections(panoptic_instances(*g, cats), rng, *g[0].shape) for g in gts]
            d = tmp_path/f'{name}{seed}'; d.mkdir()
            gt_json, dt_json = coco_files(gts, preds, cats, d)
            key = f'{name}{seed}'
            cases.append(dict(name=key, op='coco_boundary', gt_json=gt_json, dt_json=dt_json, ratio=ratio))
            ours[key] = (boundary_ap(gts, preds, cats, width=ratio), coco_mask_ap(gts, preds, cats))
    ref = ref_run('ref_biou.py', {'cases': cases}, tmp_path)
    for key, (b, m) in ours.items():
        np.testing.assert_allclose([np.nan_to_num(v, nan=-1) for v in b.values()], ref[key], rtol=0, atol=1e-12, err_msg=key)
        assert b['AP'] <= m['AP'] + 1e-12, key  # min(mask IoU, boundary IoU) never matches more than mask IoU
    assert any(b['AP'] < m['AP'] - 0.02 for b, m in ours.values())


# ---------------------------------------------------------------- Boundary PQ vs the api's procedure
@pytest.mark.parametrize('ratio', [0.02, 0.005])
def test_boundary_pq_equals_api_procedure(tmp_path, ratio):
    gj, pans = coco_gt()
    cats = gj['categories']
    arrays, segs, ours = {}, [], np.zeros((len(cats), 5))
    k = 0
    for seed, kind in enumerate(('drop', 'merge', 'shift', 'relabel', 'split', 'extra', 'mix', 'mix')):
        rng = np.random.default_rng(seed)
        for pan, a in zip(pans, gj['annotations']):
            pp, ps = perturb_coco(pan, a['segments_info'], cats, rng, kind)
            arrays[f'gt{k}'], arrays[f'pred{k}'] = pan, pp
            segs.append([a['segments_info'], ps])
            ours += bpq_stats(pan, a['segments_info'], pp, ps, cats, width=ratio)
            k += 1
    np.savez(tmp_path/'pan.npz', **arrays)
    ref = ref_run('ref_biou.py', {'cases': [dict(name='bpq', op='bpq', npz=str(tmp_path/'pan.npz'), segs=segs, categories=cats, ratio=ratio)]},
                  tmp_path)['bpq']
    np.testing.assert_allclose(ours[:, :4], np.array(ref), rtol=0, atol=1e-9)
    assert ours[:, 1].sum() > 10 and ours[:, 2].sum() > 10 and ours[:, 3].sum() > 10  # TP, FP and FN all exercised


# ---------------------------------------------------------------- the fastai panoptic family, and distributed
THING = [False, True, False, True]


def panoptic_batch(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    blocks = lambda hi: torch.randint(0, hi, (n, 4, 5), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    gs, gi = blocks(4), blocks(3)
    ps, pi = torch.roll(gs, 1, 2), torch.roll(gi, 1, 2)  # one pixel off: matches for mask IoU, fewer for Boundary IoU
    noise = torch.rand(ps.shape, generator=g) < 0.03
    ps[noise] = torch.randint(0, 4, (int(noise.sum()),), generator=g)
    gs[:, :2] = 255
    return gs, gi, ps, pi


def test_boundary_panoptic_metrics_equal_bpq_stats():
    from boundaryseg.metrics.panoptic import sem_inst_to_panoptic
    gs, gi, ps, pi = panoptic_batch(3)
    cats = [dict(id=c, isthing=int(t)) for c, t in enumerate(THING)]
    for width in (1, 2, 0.1):
        bm = BoundaryPanopticMetrics(THING, width=width)
        bm.update(ps, pi, gs, gi)
        ref = sum(bpq_stats(*sem_inst_to_panoptic(gs[b], gi[b], THING), *sem_inst_to_panoptic(ps[b], pi[b], THING, no_inst='void'), cats, width)
                  for b in range(len(gs)))
        np.testing.assert_allclose(bm.counts()[2], ref, rtol=0, atol=1e-12)
        tp_b, tp_m = bm.counts()[2][:, 1].sum(), bm.counts()[0][:, 1].sum()
        assert tp_b < tp_m if width == 1 else tp_b <= tp_m  # never more matches than mask IoU; fewer with thin bands


def _worker(rank, world, shards, pshards, out):
    acc = BIoUMetrics(5, widths=(1, 3, 0.1))
    pm = BoundaryPanopticMetrics(THING, which=('pq', 'bpq', 'bsq'), width=2)
    torch.save({'values': feed_views(acc, 'seg', shards[rank]), 'counts': acc.counts()[0],
                'pvalues': feed_views(pm, 'panoptic', pshards[rank]), 'bstats': pm.counts()[2]}, f'{out}/{rank}.pt')


def test_two_process_gloo_equals_one_process(tmp_path):
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 5, (6, 5, 7), generator=g).repeat_interleave(3, 1).repeat_interleave(3, 2)
    masks[:, :2] = 255
    logits = torch.randn(6, 5, 15, 21, generator=g) + 4 * torch.nn.functional.one_hot(torch.roll(masks.clamp(max=4), 1, 2), 5).permute(0, 3, 1, 2)
    shards = [[(logits[:2], masks[:2]), (logits[2:5], masks[2:5])], [(logits[5:], masks[5:])]]
    gs, gi, ps, pi = panoptic_batch(0)
    pred = ps * 1000 + pi
    pshards = [[(pred[:2], gs[:2], gi[:2]), (pred[2:5], gs[2:5], gi[2:5])], [(pred[5:], gs[5:], gi[5:])]]
    run_gloo(_worker, 2, shards, pshards, str(tmp_path))
    single = BIoUMetrics(5, widths=(1, 3, 0.1))
    single.update(logits, masks)
    psingle = BoundaryPanopticMetrics(THING, width=2)
    psingle.update(ps, pi, gs, gi)
    ps_ = psingle.scores()
    for r in range(2):
        res = torch.load(tmp_path/f'{r}.pt', weights_only=False)
        torch.testing.assert_close(res['counts'], single.counts()[0], rtol=0, atol=0)
        np.testing.assert_allclose(res['values'], single.scores()['mbiou'], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res['bstats'], psingle.counts()[2], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res['pvalues'], [ps_['pq'], ps_['bpq'], ps_['bsq']], rtol=0, atol=1e-12)
