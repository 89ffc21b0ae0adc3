"""SBD metrics (MF-ODS / MF-OIS / AP) vs pyEdgeEval on the same arrays; thinning and NMS bit-exact; properties; 2 processes."""
import json
from pathlib import Path
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from PIL import Image
from scipy.ndimage import gaussian_filter

from boundaryseg.core import load_ids, fixtures_path, DataError
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.data.boundaries import eval_boundaries, boundary_lut
from boundaryseg.metrics.sbd import (binary_thin, edge_nms, edge_counts, edge_scores, best_counts, edge_thresholds,
                                     sbd_protocol, SBDMetrics)
from boundaryseg.metrics.bfscore import BFScores
from conftest import ref_run, run_gloo

CS = fixtures_path()/'cityscapes'/'gtFine'/'val'/'frankfurt'/'frankfurt_000000_000294_gtFine_'
NPROC = 2


def ref_eval(tmp, pred, gt, seg=None, thresholds=99, **kw):
    "pyEdgeEval's counts (N,K,T,4) and per-class metrics on arrays pred/gt (N,K,H,W)."
    tmp = Path(tmp)
    np.save(tmp/'pred.npy', pred); np.save(tmp/'gt.npy', gt)
    if seg is not None: np.save(tmp/'seg.npy', seg)
    task = dict(op='eval', pred=str(tmp/'pred.npy'), gt=str(tmp/'gt.npy'), seg=str(tmp/'seg.npy') if seg is not None else None,
                thresholds=thresholds, nproc=NPROC, out=str(tmp/'ref.json'), out_counts=str(tmp/'ref_counts.npy'),
                **{k: kw.get(k, False) for k in ('apply_thinning', 'kill_internal', 'skip_if_nonexistent', 'apply_nms')},
                max_dist=kw['max_dist'], border=kw.get('border', 0), keep_dtype=kw.get('keep_dtype', False))
    ref_run('ref_pyedgeeval.py', task, tmp)
    return np.load(tmp/'ref_counts.npy').astype(np.int64), json.loads((tmp/'ref.json').read_text())['per_class']


def ours(pred, gt, seg=None, thresholds=99, **kw):
    c = np.stack([edge_counts(p, g, thresholds, seg=None if seg is None else seg[i], **kw) for i, (p, g) in enumerate(zip(pred, gt))])
    return c, edge_scores(c.sum(0), best_counts(c).sum(0), thresholds)


def soft_from_gt(gt, rng, shift=1, sigma=1.0, spurious=0.001):
    "A plausible soft prediction from GT boundaries: shifted, blurred, randomly damped, with spurious blobs; 8-bit values."
    g = np.roll(gt.astype(float), (shift, -shift), (-2, -1))
    b = gaussian_filter(g, [0] * (g.ndim - 2) + [sigma, sigma])
    b /= max(b.max(), 1e-9)
    sp = gaussian_filter((rng.random(g.shape) < spurious).astype(float), [0] * (g.ndim - 2) + [1.5, 1.5])
    p = np.clip(b * rng.uniform(0.5, 1.0, g.shape) + 0.6 * sp / max(sp.max(), 1e-9), 0, 1)
    return np.round(p * 255) / 255  # what the evaluators read back from 8-bit PNGs


def check_against_ref(c, s, rc, rm, tol=0.005, cls_tol=0.015, max_excess=0.002):
    """Counts: totals exact, our (maximum) matchings never below the reference's and only slightly above; mean scores within
    `tol`. Single classes get `cls_tol`: pyEdgeEval's randomised matcher alone moves a class's AP by up to ~0.009 between
    runs on these inputs (it drops matches among the few pixels left at high thresholds), ours is deterministic."""
    np.testing.assert_array_equal(c[..., 1], rc[..., 1])
    np.testing.assert_array_equal(c[..., 3], rc[..., 3])
    np.testing.assert_array_equal(c[..., 0], c[..., 2])
    assert (c[..., 0] >= rc[..., 0]).all(), "a maximum matching cannot be smaller than the reference's"
    assert c[..., 0].sum() - rc[..., 0].sum() <= max_excess * max(rc[..., 0].sum(), 1)
    for ours_k, ref_k in (('ods_f', 'ODS_f1'), ('ois_f', 'OIS_f1'), ('ap', 'AP')):
        ref = np.array([m[ref_k] for m in rm])
        np.testing.assert_allclose(s[ours_k], ref, atol=cls_tol, err_msg=ours_k)
        assert abs(s[ours_k].mean() - ref.mean()) <= tol
    # the aggregation alone is the reference's to the bit: score the reference's own counts
    r = edge_scores(rc.sum(0), best_counts(rc).sum(0), len(rm[0]['recall']))
    for ours_k, ref_k in (('ods_f', 'ODS_f1'), ('ods_r', 'ODS_recall'), ('ods_p', 'ODS_precision'), ('ods_t', 'ODS_threshold'),
                          ('ois_f', 'OIS_f1'), ('ap', 'AP'), ('auc', 'AUC')):
        np.testing.assert_array_equal(r[ours_k], [m[ref_k] for m in rm], err_msg=ours_k)


# ---------------------------------------------------------------- building blocks, bit-exact

def test_thin_equals_reference(tmp_path):
    rng = np.random.default_rng(0)
    maps = gaussian_filter(rng.random((24, 48, 64)), (0, 2.5, 2.5))
    x = maps > np.quantile(maps, rng.uniform(0.3, 0.9, 24))[:, None, None]
    x[0] = True; x[1] = False; x[2, :, 0] = True  # full, empty, touching the border
    soft = soft_from_gt(gaussian_filter(rng.random((2, 48, 64)), (0, 3, 3)) > 0.5, rng, sigma=2)
    x = np.concatenate([x, (soft[:, None] >= edge_thresholds(9)[None, :, None, None]).reshape(-1, 48, 64)])
    np.save(tmp_path/'x.npy', x)
    ref_run('ref_pyedgeeval.py', dict(op='thin', x=str(tmp_path/'x.npy'), out=str(tmp_path/'y.npy')), tmp_path)
    np.testing.assert_array_equal(binary_thin(x), np.load(tmp_path/'y.npy'))


def test_nms_equals_reference(tmp_path):
    "NMS hinges on exact zeros of second derivatives at symmetric points: the output must be the reference's to the bit."
    rng = np.random.default_rng(1)
    gt = eval_boundaries(boundary_lut(CITYSCAPES)[load_ids(Path(f'{CS}labelIds.png'))], 19, 'raw', scale=1.0, void_index=254)
    x = np.concatenate([soft_from_gt(gt[[0, 2, 5, 13]], rng), soft_from_gt(gt[[1, 8]], rng, sigma=2.5),
                        gaussian_filter(rng.random((2, 128, 256)), (0, 2, 2))])
    np.save(tmp_path/'x.npy', x)
    ref_run('ref_pyedgeeval.py', dict(op='nms', x=str(tmp_path/'x.npy'), out=str(tmp_path/'y.npy')), tmp_path)
    for b in ('numba', 'torch'): np.testing.assert_array_equal(edge_nms(x, backend=b), np.load(tmp_path/'y.npy'), err_msg=b)


def test_nms_float32_equals_reference(tmp_path):
    "fast_nms filters a float32 map in float32 (its filters take the map's dtype); edge_nms must too, to the bit."
    rng = np.random.default_rng(5)
    x = gaussian_filter(rng.random((60, 48, 64)), (0, 2, 2))
    x = (x - x.min((1, 2), keepdims=True)) / np.ptp(x, (1, 2), keepdims=True)
    x = (1 / (1 + np.exp(-12 * (x - 0.6)))).astype(np.float32)  # sigmoid-like maps: no zero anywhere
    np.save(tmp_path/'x.npy', x)
    ref_run('ref_pyedgeeval.py', dict(op='nms', x=str(tmp_path/'x.npy'), out=str(tmp_path/'y.npy'), keep_dtype=True), tmp_path)
    ref = np.load(tmp_path/'y.npy')
    for b in ('numba', 'torch'):
        np.testing.assert_array_equal(edge_nms(x, backend=b), ref, err_msg=b)
        np.testing.assert_array_equal(edge_nms(torch.from_numpy(x), backend=b).numpy(), ref, err_msg=b)
        assert (edge_nms(x.astype(np.float64), backend=b) != ref).any()  # filtering in float64 is another result
    c = edge_counts(x[:4], np.zeros((4, 48, 64), bool), 9, apply_nms=True)  # edge_counts keeps the dtype for its NMS
    np.testing.assert_array_equal(c[..., 3], edge_counts(ref[:4], np.zeros((4, 48, 64), bool), 9)[..., 3])


def test_nms_refuses_non_finite():
    "One NaN (or inf) pixel is an error naming the map, not a silently zeroed 32-pixel tile (MF-ODS 0 with no word)."
    x = np.full((2, 3, 64, 64), 0.2); x[1, 2, 40, 7] = np.nan
    for b in ('numba', 'torch'):
        with pytest.raises(DataError, match=r'finite maps, got NaN or inf at 1 of 24576 values \(maps \[5\]'):
            edge_nms(x, backend=b)
    x[1, 2, 40, 7] = np.inf
    with pytest.raises(DataError, match='NaN or inf'): edge_nms(torch.from_numpy(x).float())
    acc = SBDMetrics(3, sbd_protocol('sbd-raw', apply_nms=True), thresholds=9)
    x[1, 2, 40, 7] = np.nan
    with pytest.raises(DataError, match='NaN or inf'): acc.update(x, np.zeros(x.shape, bool))
    with pytest.raises(DataError, match='NaN'): edge_counts(x[1], np.zeros(x.shape[1:], bool), 9, apply_nms=True)


def test_sbd_border_then_nms_equals_reference(tmp_path):
    """SBD protocol with Test-NMS on boundaries that run into the 5-pixel ring: pyEdgeEval's SBD evaluator clears the ring
    (`add_ignore_pixel`) and then runs NMS, so pixels next to the ring are not suppressed by values inside it. The
    predicted totals (sumP) of every class and threshold equal the reference's, and so do sumR; matches as everywhere."""
    rng = np.random.default_rng(7)
    labs, insts = zip(*[scene(rng, 72, 96) for _ in range(2)])
    proto = sbd_protocol('sbd-raw', apply_nms=True)
    gt = np.stack([eval_boundaries(l, 5, 'raw', inst=i, scale=1.0, border=proto.border) for l, i in zip(labs, insts)])
    full = np.stack([eval_boundaries(l, 5, 'raw', inst=i, scale=1.0) for l, i in zip(labs, insts)])
    pred = soft_from_gt(full, rng, sigma=1.5)  # made from the GT without the ring: strong values inside it
    pred[:, :, :7, :] = np.maximum(pred[:, :, :7, :], np.round(rng.uniform(0, 1, pred[:, :, :7, :].shape) * 255) / 255)
    acc = SBDMetrics(5, proto, thresholds=33)
    acc.update(pred, gt)
    rc, rm = ref_eval(tmp_path, pred, gt, thresholds=33, border=proto.border, **proto.counts_kwargs())
    np.testing.assert_array_equal(acc.total[..., 3], rc.sum(0)[..., 3])
    np.testing.assert_array_equal(acc.total[..., 1], rc.sum(0)[..., 1])
    assert (acc.total[..., 0] >= rc.sum(0)[..., 0]).all()
    assert acc.total[..., 0].sum() - rc.sum(0)[..., 0].sum() <= 0.002 * rc[..., 0].sum()


# ---------------------------------------------------------------- Cityscapes protocols on the real fixture

@pytest.fixture(scope='module')
def cityscapes(tmp_path_factory):
    "The fixture frame upsampled 4x (to 512x1024, so the half-resolution tolerance 0.0035 x diagonal is 2 px), as PNGs."
    d = tmp_path_factory.mktemp('cs')
    lab, inst = load_ids(Path(f'{CS}labelIds.png')), load_ids(Path(f'{CS}instanceIds.png'))
    up = lambda a: a.repeat(4, 0).repeat(4, 1)
    Image.fromarray(up(lab).astype(np.uint8)).save(d/'lab.png')
    Image.fromarray(up(inst).astype(np.uint16)).save(d/'inst.png')
    return d, up(lab), up(inst).astype(np.int32)


@pytest.mark.parametrize('name', ['cityscapes-raw', 'cityscapes-thin'])
def test_cityscapes_protocol(cityscapes, tmp_path, name):
    d, lab, inst = cityscapes
    proto = sbd_protocol(name)
    # GT: pyEdgeEval's own conversion (PNG written by convert_cityscapes, read back by the evaluator) ...
    gt_task = dict(op='gt', label=str(d/'lab.png'), inst=str(d/'inst.png'), out=str(tmp_path/'gt.npy'),
                   **(dict(radius=2, thin=False, convert_scale=1.0, eval_scale=0.5) if proto.gt_protocol == 'raw' else
                      dict(radius=1, thin=True, convert_scale=0.5, eval_scale=1.0)))
    ref_run('ref_pyedgeeval.py', gt_task, tmp_path)
    gt = np.load(tmp_path/'gt.npy')
    # ... equals data.boundaries' (the GT side of the protocol), so the whole pipeline is the reference's
    np.testing.assert_array_equal(eval_boundaries(boundary_lut(CITYSCAPES)[lab], 19, proto.gt_protocol, inst=inst, void_index=254), gt)
    pred = soft_from_gt(gt, np.random.default_rng(2))[None]
    rc, rm = ref_eval(tmp_path, pred, gt[None], **proto.counts_kwargs())
    c, s = ours(pred, gt[None], **proto.counts_kwargs())
    check_against_ref(c, s, rc, rm)


# ---------------------------------------------------------------- SBD-style settings on synthetic scenes

def scene(rng, H=96, W=128, K=5):
    "A label map of smooth random regions (classes 0..K-1, a few ignored pixels) and an instance map for class 1."
    f = gaussian_filter(rng.random((K, H, W)), (0, 6, 6))
    lab = f.argmax(0).astype(np.uint8)
    lab[:4, :9] = 255
    inst = np.where(lab == 1, 1 + (np.arange(W)[None] >= W // 2), 0).astype(np.int32)
    return lab, inst


@pytest.mark.parametrize('variant', ['thin', 'raw', 'non-IS', 'nms'])
def test_sbd_protocol_synthetic(tmp_path, variant):
    "SBD settings (maxDist 0.02, full resolution) with instance-sensitive, non-IS (kill_internal, skip) and NMS variants."
    rng = np.random.default_rng(3)
    labs, insts = zip(*[scene(rng, 80, 112) for _ in range(2)])
    proto = sbd_protocol('sbd-raw' if variant == 'raw' else 'sbd-thin', instance_sensitive=variant != 'non-IS',
                         apply_nms=variant == 'nms')
    K = 6  # class 5 never occurs: its predictions are pure false positives (or skipped, non-IS)
    gt = np.stack([eval_boundaries(l, K, proto.gt_protocol, inst=i if proto.instance_sensitive else None, scale=1.0)
                   for l, i in zip(labs, insts)])
    pred = soft_from_gt(gt, rng, spurious=0.002)
    seg = np.stack(labs)
    # 33 thresholds: pyEdgeEval's matcher is slow on these dense bands (99 run in the Cityscapes tests and the bench)
    rc, rm = ref_eval(tmp_path, pred, gt, seg, thresholds=33, **proto.counts_kwargs())
    c, s = ours(pred, gt, seg, thresholds=33, **proto.counts_kwargs())
    check_against_ref(c, s, rc, rm)


def test_workers_equal_one_process():
    "SBDMetrics(workers=2) counts images in other processes, seg (kill_internal) and NMS included: the same integer counts."
    rng = np.random.default_rng(8)
    labs, _ = zip(*[scene(rng, 64, 80) for _ in range(3)])
    seg = np.stack(labs)
    for proto in (sbd_protocol('sbd-thin', instance_sensitive=False), sbd_protocol('sbd-raw', apply_nms=True)):
        gt = np.stack([eval_boundaries(l, 6, proto.gt_protocol, scale=1.0, border=proto.border) for l in labs])
        pred = soft_from_gt(gt, rng).astype(np.float32)
        one, two = SBDMetrics(6, proto, thresholds=19), SBDMetrics(6, proto, thresholds=19, workers=2)
        for i in range(3): one.update(pred[i:i + 1], gt[i:i + 1], seg[i:i + 1]); two.update(pred[i:i + 1], gt[i:i + 1], seg[i:i + 1])
        for a, b in zip(one.counts(), two.counts()): np.testing.assert_array_equal(a, b)
        assert two.n_images[0] == 3
        two.close()


def test_workers_reset_releases_shared_maps():
    "The maps travel to the workers in shared-memory blocks: reset() drops the waiting images and removes every block."
    rng = np.random.default_rng(9)
    pred, gt = rng.random((4, 3, 48, 64)), rng.random((4, 3, 48, 64)) < 0.05
    acc, one = SBDMetrics(3, sbd_protocol('sbd-raw'), thresholds=9, workers=2), SBDMetrics(3, sbd_protocol('sbd-raw'), thresholds=9)
    acc.update(pred, gt)
    names = [shm.name for _, shm in acc._pending]
    assert len(names) == 4
    acc.reset()
    assert acc._pending == [] and acc.n_images.sum() == 0
    assert not any(Path('/dev/shm', n.lstrip('/')).exists() for n in names)
    acc.update(pred, gt); one.update(pred, gt)
    for a, b in zip(one.counts(), acc.counts()): np.testing.assert_array_equal(a, b)
    acc.close()


# ---------------------------------------------------------------- properties

@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), thin=st.booleans(), K=st.integers(1, 4))
def test_properties(seed, thin, K):
    rng = np.random.default_rng(seed)
    lab = gaussian_filter(rng.random((K, 40, 56)), (0, 4, 4)).argmax(0)
    gt = eval_boundaries(lab.astype(np.uint8), K, 'thin' if thin else 'raw', scale=1.0)
    kw = dict(max_dist=0.02, apply_thinning=thin)
    present = gt.reshape(K, -1).any(1)
    perfect = edge_counts(gt.astype(float), gt, max_dist=0.02)
    s = edge_scores(perfect, best_counts(perfect))
    np.testing.assert_allclose(s['ods_f'][present], 1); np.testing.assert_allclose(s['ap'][present], 100 / 101)
    # thinning a thinned map may still delete a pixel (the reference stops when one sub-iteration deletes nothing, and
    # the other might have), so under thinning a perfect prediction is perfect only up to those pixels
    perfect = edge_counts(gt.astype(float), gt, **kw)
    lost = (gt.astype(bool) & ~binary_thin(gt)).reshape(K, -1).sum(1)
    assert (perfect[:, :, 0] >= gt.reshape(K, -1).sum(1)[:, None] - lost[:, None]).all()  # a lost row costs at most one match
    pred = soft_from_gt(gt, rng, shift=int(rng.integers(0, 3)))
    c = edge_counts(pred, gt, **kw)
    assert (c[..., 0] <= np.minimum(c[..., 1], c[..., 3])).all()
    s = edge_scores(c, best_counts(c))
    for k in ('ods_f', 'ois_f', 'ap', 'auc', 'recall', 'precision'): assert ((s[k] >= 0) & (s[k] <= 1)).all(), k
    r, p = s['recall'], s['precision']
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)
    np.testing.assert_allclose(s['ois_f'], f.max(1), atol=1e-12)  # one image: OIS is its best threshold's F ...
    assert (s['ods_f'] >= s['ois_f'] - 1e-12).all()  # ... and ODS searches between thresholds too
    np.testing.assert_array_equal(edge_counts(pred[::-1], gt[::-1], **kw), c[::-1])  # classes are independent


# ---------------------------------------------------------------- two processes

def _worker(rank, world, data, out):
    pred, gt, seg, lab, lbl_pred = (x[rank::world] for x in data)
    sbd = SBDMetrics(6, 'sbd-thin', thresholds=19)
    sbd.update(pred, gt, seg)
    bf = BFScores(6, tols=(2, 5))
    bf.update(torch.from_numpy(lbl_pred), torch.from_numpy(lab))
    s, b = sbd.scores(), bf.scores()
    if rank == 0: np.save(Path(out)/'dist.npy', np.r_[s['ods_f'], s['ois_f'], s['ap'], b['f_class'].numpy().ravel()])


def test_two_processes_equal_one(tmp_path):
    rng = np.random.default_rng(4)
    labs, _ = zip(*[scene(rng) for _ in range(4)])
    lab = np.stack(labs)
    gt = np.stack([eval_boundaries(l, 6, 'thin', scale=1.0) for l in labs])
    pred = soft_from_gt(gt, rng)
    lbl_pred = np.roll(np.where(lab == 255, 0, lab), 2, 2).astype(np.int64)
    data = (pred, gt, lab, lab.astype(np.int64), lbl_pred)
    run_gloo(_worker, 2, data, str(tmp_path))
    sbd = SBDMetrics(6, 'sbd-thin', thresholds=19); sbd.update(pred, gt, lab)
    bf = BFScores(6, tols=(2, 5)); bf.update(torch.from_numpy(lbl_pred), torch.from_numpy(lab.astype(np.int64)))
    s, b = sbd.scores(), bf.scores()
    np.testing.assert_allclose(np.load(tmp_path/'dist.npy'), np.r_[s['ods_f'], s['ois_f'], s['ap'], b['f_class'].numpy().ravel()],
                               rtol=0, atol=1e-12)
