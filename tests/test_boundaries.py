"""On-the-fly boundary GT (`boundaryseg.data.boundaries`) against pyEdgeEval, the code SBCB's targets come from
(run in the reference environment), and against the scipy reference: the real Cityscapes fixture with its ignore,
void and instance pixels, synthetic maps, the "thin" / "raw" evaluation protocols, the full-resolution map, and
hypothesis-generated maps."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from boundaryseg.core import fixtures_path, load_ids
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.data.boundaries import (seg_boundaries, binary_boundaries, seg_boundaries_ref, eval_boundaries, thin_boundaries,
                                         boundary_lut)
from conftest import ref_run

FX = fixtures_path()
CS_GT = FX/'cityscapes'/'gtFine'/'val'/'frankfurt'
LABEL_PNG, INST_PNG = CS_GT/'frankfurt_000000_000294_gtFine_labelIds.png', CS_GT/'frankfurt_000000_000294_gtFine_instanceIds.png'
PRED_PNG = FX/'cityscapes_fullres_predictions'/'frankfurt'/'frankfurt_000000_000294_pred_labelIds.png'
CS_INST_LABELS = [24, 25, 26, 27, 28, 31, 32, 33]
VOID = 254


def run_ref(jobs, tmp):
    ref_run('ref_boundary_gt.py', {'jobs': jobs}, tmp)
    return [np.load(j['out']) for j in jobs]


def blobs(rng, H, W, n, vals):
    "Random map of `n` discs and bars painted with values from `vals`."
    m = np.full((H, W), vals[0], np.int64)
    yy, xx = np.mgrid[:H, :W]
    for _ in range(n):
        v, cy, cx, rad = rng.choice(vals), rng.integers(0, H), rng.integers(0, W), rng.integers(1, max(2, H // 3))
        if rng.random() < .5: m[(yy - cy)**2 + (xx - cx)**2 <= rad * rad] = v
        else: m[(abs(yy - cy) <= rad) & (abs(xx - cx) <= rng.integers(1, W + 1))] = v
    return m


def cityscapes_map(rng, H, W):
    "A random Cityscapes labelIds map (with ignore 2/3, voids and things) and its instanceIds map."
    lab = blobs(rng, H, W, 25, [7, 8, 11, 21, 23, 2, 3, 0, 4, 24, 26, 33]).astype(np.uint8)
    k = blobs(rng, H, W, 12, [0, 1, 2, 3])
    inst = np.where(np.isin(lab, CS_INST_LABELS) & (k > 0), lab.astype(np.int64) * 1000 + k, lab).astype(np.int32)
    return lab, inst


@pytest.fixture(scope='module')
def cs():
    lab, inst = load_ids(LABEL_PNG), load_ids(INST_PNG)
    return dict(lab=lab, inst=inst, bmask=boundary_lut(CITYSCAPES)[lab], tmask=CITYSCAPES.encode(lab))


def to_train(edges_label_space):
    "pyEdgeEval's `edge_label2trainId`: keep the channels of the 19 evaluated label ids, in train-id order."
    return edges_label_space[..., CITYSCAPES.train_to_native, :, :]


def test_fixture_vs_pyedgeeval(cs, tmp_path):
    np.savez(tmp_path/'cs.npz', mask=cs['lab'][None], inst=cs['inst'][None])
    cases = [(r, cv, isv) for r in (1, 2, 3) for cv in (True, False) for isv in (False, True)]
    jobs = [dict(op='edges', **{'in': str(tmp_path/'cs.npz')}, labels=list(range(34)), ignore=[2, 3], radius=r, use_cv2=cv,
                 inst_labels=CS_INST_LABELS if isv else None, out=str(tmp_path/f'e{i}.npy')) for i, (r, cv, isv) in enumerate(cases)]
    for (r, cv, isv), ref in zip(cases, run_ref(jobs, tmp_path)):
        ref = to_train(ref)[0]
        assert ref.sum() > 0
        for things in (CITYSCAPES.thing_ids, None):
            ours = seg_boundaries(cs['bmask'], 19, r, inst=cs['inst'] if isv else None, thing_ids=things, void_index=VOID)
            np.testing.assert_array_equal(ours, ref, err_msg=f"radius={r} cv2={cv} instance-sensitive={isv}")
        np.testing.assert_array_equal(binary_boundaries(cs['bmask'], r, inst=cs['inst'] if isv else None, void_index=VOID), ref.any(0))


def test_instances_matter(cs):
    "The fixture's persons/cars touch: instance-sensitive maps must have strictly more boundary pixels."
    a = seg_boundaries(cs['bmask'], 19, 2, void_index=VOID)
    b = seg_boundaries(cs['bmask'], 19, 2, inst=cs['inst'], void_index=VOID)
    assert (a <= b).all() and b.sum() > a.sum()


def test_synthetic_vs_pyedgeeval(tmp_path):
    """Label ids 10..15 are classes 0..5 (13..15 things), 16 is ignored, 17 void; instance ids label*1000+k.
    pyEdgeEval's one-hot channel index must equal the label id (its instance lookup is keyed by label id), so the
    one-hot runs over ids 0..17 and the channels of 10..15 are compared."""
    rng = np.random.default_rng(1)
    labs = np.stack([blobs(rng, 40, 52, 14, [10, 11, 12, 13, 14, 15, 16, 17, 13, 14]) for _ in range(8)]).astype(np.uint8)
    k = np.stack([blobs(rng, 40, 52, 8, [0, 1, 2, 3]) for _ in range(8)])
    inst = np.where((labs >= 13) & (labs <= 15) & (k > 0), labs.astype(np.int64) * 1000 + k, labs).astype(np.int32)
    np.savez(tmp_path/'syn.npz', mask=labs, inst=inst)
    ours_mask = np.where(labs == 16, 255, np.where(labs == 17, VOID, labs - 10)).astype(np.uint8)
    cases = [(r, isv) for r in (1, 2, 3) for isv in (False, True)]
    jobs = [dict(op='edges', **{'in': str(tmp_path/'syn.npz')}, labels=list(range(18)), ignore=[16], radius=r, use_cv2=True,
                 inst_labels=[13, 14, 15] if isv else None, out=str(tmp_path/f's{i}.npy')) for i, (r, isv) in enumerate(cases)]
    for (r, isv), ref in zip(cases, run_ref(jobs, tmp_path)):
        ref = ref[:, 10:16]
        ours = seg_boundaries(torch.from_numpy(ours_mask), 6, r, inst=torch.from_numpy(inst) if isv else None, thing_ids=[3, 4, 5], void_index=VOID)
        np.testing.assert_array_equal(ours.numpy(), ref, err_msg=f"radius={r} instance-sensitive={isv}")
        if r >= 2: assert (ref.any(1) & (labs == 16)).any()  # ignored pixels between classes were exercised


def test_protocols_vs_pyedgeeval(cs, tmp_path):
    rng = np.random.default_rng(2)
    pairs = [(LABEL_PNG, INST_PNG, cs['lab'], cs['inst'])]
    for i, (H, W) in enumerate([(75, 131), (70, 96)]):  # pyEdgeEval's one-hot needs H >= 34 at half size
        lab, inst = cityscapes_map(rng, H, W)
        lp, ip = tmp_path/f'syn{i}_labelIds.png', tmp_path/f'syn{i}_instanceIds.png'
        Image.fromarray(lab).save(lp); Image.fromarray(inst.astype(np.uint16)).save(ip)
        assert np.array_equal(load_ids(ip), inst)
        pairs.append((lp, ip, lab, inst))
    jobs, cases = [], []
    for n, (lp, ip, lab, inst) in enumerate(pairs):
        for protocol in ('thin', 'raw'):
            for isv in (False, True):
                thin = protocol == 'thin'
                jobs.append(dict(op='protocol', label=str(lp), inst=str(ip) if isv else None, radius=1 if thin else 2, thin=thin,
                                 convert_scale=0.5 if thin else 1.0, eval_scale=1.0 if thin else 0.5, out=str(tmp_path/f'p{len(jobs)}.npy')))
                cases.append((n, protocol, isv, lab, inst))
    for (n, protocol, isv, lab, inst), ref in zip(cases, run_ref(jobs, tmp_path)):
        ours = eval_boundaries(boundary_lut(CITYSCAPES)[lab], 19, protocol, inst=inst if isv else None, void_index=VOID)
        assert ref.sum() > 0
        np.testing.assert_array_equal(ours, ref, err_msg=f"map {n} protocol={protocol} instance-sensitive={isv}")


def test_thin_vs_pyedgeeval(tmp_path):
    rng = np.random.default_rng(3)
    x = np.stack([rng.random((30, 40)) < p for p in (0.2, 0.5, 0.8)]
                 + [seg_boundaries(blobs(rng, 30, 40, 10, [0, 1, 2, 255]).astype(np.uint8), 3, 2).any(0) for _ in range(5)]).astype(np.uint8)
    np.save(tmp_path/'x.npy', x)
    (ref,) = run_ref([dict(op='thin', **{'in': str(tmp_path/'x.npy')}, out=str(tmp_path/'t.npy'))], tmp_path)
    np.testing.assert_array_equal(thin_boundaries(torch.from_numpy(x)).numpy(), ref)


def test_fullres_vs_scipy_reference():
    "The realistic 2048x1024 prediction, with vegetation set to ignore so that ignored pixels border every class."
    m = CITYSCAPES.encode(load_ids(PRED_PNG))
    m[m == 8] = 255
    ref = seg_boundaries_ref(m, 19, 2)
    ours = seg_boundaries(torch.from_numpy(m)[None], 19, 2)[0].numpy()
    np.testing.assert_array_equal(ours, ref)
    assert (ref.any(0) & (m == 255)).any()
    np.testing.assert_array_equal(binary_boundaries(m, 2), ref.any(0))


@settings(max_examples=150, deadline=None)
@given(m=arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.sampled_from([0, 1, 2, 3, 255, 254])),
       inst=st.one_of(st.none(), arrays(np.int32, 12 * 12, elements=st.integers(0, 2))),
       r=st.sampled_from([1, 1.5, 2, 2.5, 3]))
def test_hypothesis_vs_scipy_reference(m, inst, r):
    inst = None if inst is None else inst[:m.size].reshape(m.shape)
    ref = seg_boundaries_ref(np.where(m == 254, 253, m), 4, r, inst=inst)
    np.testing.assert_array_equal(seg_boundaries(m, 4, r, inst=inst, void_index=254), ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu(cs):
    for isv in (False, True):
        kw = dict(inst=torch.from_numpy(cs['inst']) if isv else None, void_index=VOID)
        cpu = seg_boundaries(torch.from_numpy(cs['bmask']), 19, 2, **kw)
        gpu = seg_boundaries(torch.from_numpy(cs['bmask']).cuda(), 19, 2, **{**kw, 'inst': None if kw['inst'] is None else kw['inst'].cuda()})
        assert torch.equal(cpu, gpu.cpu())


def test_narrow_keys_equal_wide_keys(cs):
    "Labels < 256 and instance ids < 2^23 pair into int32 keys; shifting the instance ids past 2^23 forces the int64 keys: same maps."
    from boundaryseg.data.boundaries import _prep
    rng = np.random.default_rng(0)
    maps = [(cs['bmask'], cs['inst'])] + [(boundary_lut(CITYSCAPES)[lab], inst) for lab, inst in (cityscapes_map(rng, 96, 160) for _ in range(3))]
    for m, inst in maps:
        m, narrow = torch.from_numpy(m)[None], torch.from_numpy(inst)[None]
        wide = torch.where(narrow > 0, narrow + 2**23, 0)
        assert _prep(m, narrow, 19, 255, VOID, None, 2)[1].dtype == torch.int32
        assert _prep(m, wide, 19, 255, VOID, None, 2)[1].dtype == torch.int64
        for r in (1, 2, 3):
            a, b = seg_boundaries(m, 19, r, inst=narrow, void_index=VOID), seg_boundaries(m, 19, r, inst=wide, void_index=VOID)
            assert a.sum() > 0 and torch.equal(a, b)
            assert torch.equal(binary_boundaries(m, r, inst=narrow, void_index=VOID), binary_boundaries(m, r, inst=wide, void_index=VOID))
