"""Semantic metrics vs cityscapesscripts' official pixel-level evaluator, properties, and a 2-process (gloo) run."""
import numpy as np
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from PIL import Image

from boundaryseg.core import load_ids, fixtures_path, save_png
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.metrics.semantic import (SegMetrics, MIoU, confusion_matrix, seg_scores, instance_counts, iiou_scores,
                                          cityscapes_avg_class_size, save_cityscapes_pred)
from conftest import ref_run, run_gloo, feed_views

FX = fixtures_path()
FRAME = 'frankfurt_000000_000294'
CS_GT = FX/'cityscapes'/'gtFine'/'val'/'frankfurt'
CS_PRED = FX/'cityscapes_fullres_predictions'/'frankfurt'


def centres(n, big): return ((np.arange(n) + 0.5) * big / n).astype(int)


def perturb(gt, inst, rng):
    "A plausible wrong prediction (train ids) made from the ground truth: class noise, swaps, shifts, void, dropped instances."
    p = gt.copy()
    p[p == 255] = rng.integers(0, 19)
    H, W = p.shape
    for _ in range(rng.integers(3, 10)):  # rectangles relabelled with a random class (or 255 = no class)
        y, x = rng.integers(0, H), rng.integers(0, W)
        h, w = rng.integers(2, H // 3), rng.integers(2, W // 3)
        p[y:y + h, x:x + w] = rng.choice([*range(19), 255])
    a, b = rng.choice(19, 2, replace=False)  # two classes swapped
    p = np.where(p == a, b, np.where(p == b, a, p))
    p = np.roll(p, rng.integers(-3, 4), axis=int(rng.integers(0, 2)))
    ids = np.unique(inst[inst > 1000])
    if len(ids): p[inst == rng.choice(ids)] = rng.integers(0, 19)  # one instance entirely wrong
    noise = rng.random(p.shape) < 0.05
    p[noise] = rng.integers(0, 19, noise.sum())
    return p.astype(np.uint8)


def ours(preds, gts, insts):
    sm = SegMetrics(19, avg_class_size=cityscapes_avg_class_size(), min_inst=1001)
    for p, g, i in zip(preds, gts, insts): sm.update(torch.from_numpy(p), torch.from_numpy(g), torch.from_numpy(i))
    return sm.scores(), sm.counts()[0]


def compare(mine, ref, cm):
    "Max abs difference over mIoU, iIoU and every per-class score; NaNs must be in the same places."
    diffs = [abs(mine['miou'] - ref['averageScoreClasses']), abs(mine['miiou'] - ref['averageScoreInstClasses'])]
    for k, name in enumerate(CITYSCAPES.classes):
        for a, b in ((mine['iou'][k], ref['classScores'][name]), (mine['iiou'][k], ref['classInstScores'][name])):
            assert np.isnan(a) == np.isnan(b), (name, a, b)
            if not np.isnan(a): diffs.append(abs(a - b))
    # the confusion matrix itself: ref is over label ids 0..33; ours over train ids + "predicted no class"
    ref_cm = np.array(ref['confMatrix'], np.int64)
    ids = CITYSCAPES.train_to_native
    np.testing.assert_array_equal(cm[:, :19].numpy(), ref_cm[np.ix_(ids, ids)])
    np.testing.assert_array_equal(cm[:, 19].numpy(), ref_cm[ids].sum(1) - ref_cm[np.ix_(ids, ids)].sum(1))
    return max(diffs)


def write_case(d, name, preds, gts_labelids, insts):
    "Cityscapes-like layout: gt/<frame>_gtFine_{labelIds,instanceIds}.png, pred/<frame>_pred_labelIds.png."
    (d/'gt').mkdir(parents=True); (d/'pred').mkdir()
    case = {'name': name, 'pred': [], 'gt': []}
    for k, (p, g, i) in enumerate(zip(preds, gts_labelids, insts)):
        frame = f'frankfurt_{k:06d}_{k:06d}'
        save_png(g.astype(np.uint8), d/'gt'/f'{frame}_gtFine_labelIds.png')
        save_png(i.astype(np.int32), d/'gt'/f'{frame}_gtFine_instanceIds.png')
        case['gt'].append(str(d/'gt'/f'{frame}_gtFine_labelIds.png'))
        case['pred'].append(str(save_cityscapes_pred(torch.from_numpy(p), frame, d/'pred')))
    return case


def fixture_gt():
    lbl, inst = load_ids(CS_GT/f'{FRAME}_gtFine_labelIds.png'), load_ids(CS_GT/f'{FRAME}_gtFine_instanceIds.png')
    return lbl, inst


def test_equals_cityscapesscripts(tmp_path):
    lbl, inst = fixture_gt()
    gt = CITYSCAPES.encode(lbl)
    cases, mine = [], {}
    # random perturbations of the real GT: 4 single-image cases and one 3-image case
    for seed in range(4):
        p = perturb(gt, inst, np.random.default_rng(seed))
        cases.append(write_case(tmp_path/f'rand{seed}', f'rand{seed}', [p], [lbl], [inst]))
        mine[f'rand{seed}'] = ours([p], [gt], [inst])
    ps = [perturb(gt, inst, np.random.default_rng(10 + s)) for s in range(3)]
    cases.append(write_case(tmp_path/'multi', 'multi', ps, [lbl] * 3, [inst] * 3))
    mine['multi'] = ours(ps, [gt] * 3, [inst] * 3)
    # the full-res HRNet+OCR predictions: nearest-downsampled to the GT, and at full res against the GT upsampled 8x
    hr = [load_ids(CS_PRED/f'frankfurt_000000_{f}_pred_labelIds.png') for f in ('000294', '002196')]
    H, W = lbl.shape
    down = CITYSCAPES.encode(hr[0][centres(H, hr[0].shape[0])][:, centres(W, hr[0].shape[1])])
    cases.append(write_case(tmp_path/'down', 'down', [down], [lbl], [inst]))
    mine['down'] = ours([down], [gt], [inst])
    up = lambda a: np.repeat(np.repeat(a, hr[0].shape[0] // H, 0), hr[0].shape[1] // W, 1)
    full = [CITYSCAPES.encode(h) for h in hr]  # the second frame's prediction against this GT: an unrelated pair
    cases.append(write_case(tmp_path/'full', 'full', full, [up(lbl)] * 2, [up(inst)] * 2))
    mine['full'] = ours(full, [up(gt)] * 2, [up(inst)] * 2)

    ref = ref_run('ref_cityscapes_semantic.py', {'cases': cases}, tmp_path)
    worst = {n: compare(mine[n][0], ref[n], mine[n][1]) for n in mine}
    print('max abs diff per case:', worst)
    assert max(worst.values()) < 1e-6, worst
    assert abs(mine['down'][0]['miou'] - 0.615) < 5e-4  # the fixture MANIFEST's value for this pair
    assert 0 < mine['full'][0]['miiou'] < 1


# ---------------------------------------------------------------- properties
def _maps(draw, C):
    H, W = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    vals = st.sampled_from([*range(C), 255])
    gt = np.array(draw(st.lists(vals, min_size=H * W, max_size=H * W)), np.int64).reshape(H, W)
    pr = np.array(draw(st.lists(vals, min_size=H * W, max_size=H * W)), np.int64).reshape(H, W)
    return gt, pr


@st.composite
def maps(draw, C=5): return _maps(draw, C)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maps(), st.permutations(range(5)))
def test_properties(gp, perm):
    gt, pr = gp
    s = seg_scores(confusion_matrix(pr, gt, 5))
    for k in ('miou', 'acc', 'macc', 'fwiou'):
        assert np.isnan(s[k]) or 0 <= s[k] <= 1
    perfect = seg_scores(confusion_matrix(gt, gt, 5))
    if (gt != 255).any():
        assert perfect['miou'] == perfect['acc'] == perfect['macc'] == perfect['fwiou'] == 1
    # relabelling the classes consistently in GT and prediction permutes the per-class IoU and keeps the means
    lut = np.array([*perm, *[255] * 251]); lut[255] = 255
    sp = seg_scores(confusion_matrix(lut[pr], lut[gt], 5))
    np.testing.assert_allclose(sp['iou'][list(perm)], s['iou'])
    for k in ('miou', 'acc', 'macc', 'fwiou'): np.testing.assert_allclose(sp[k], s[k])


@settings(max_examples=20, deadline=None)
@given(maps(), st.integers(1, 4))
def test_batching_invariance(gp, splits):
    "Counting image by image, in any split, equals counting all at once (counts, never averaged scores)."
    gt, pr = gp
    gts, prs = np.array_split(gt, splits, 0), np.array_split(pr, splits, 0)
    sm = SegMetrics(5)
    for g, p in zip(gts, prs): sm.update(p, g)
    assert torch.equal(sm.counts()[0], confusion_matrix(pr, gt, 5))


def test_iiou_perfect_and_bounds():
    lbl, inst = fixture_gt()
    gt = CITYSCAPES.encode(lbl)
    ic = instance_counts(gt, gt, inst, 19, cityscapes_avg_class_size(), min_inst=1001)
    s = iiou_scores(confusion_matrix(gt, gt, 19), ic, cityscapes_avg_class_size())
    present = [k for k in CITYSCAPES.thing_ids if ((inst > 1000) & (gt == k)).any()]
    np.testing.assert_allclose(s['iiou'][present], 1)
    assert s['miiou'] == 1


# ---------------------------------------------------------------- distributed
def _worker(rank, world, shards, out):
    sm = SegMetrics(5, which=('miou', 'miiou'), avg_class_size=[np.nan, 7., np.nan, 3., np.nan])
    torch.save({'values': feed_views(sm, 'seg', shards[rank]), 'cm': sm.counts()[0]}, f'{out}/{rank}.pt')


def test_two_process_gloo_equals_one_process(tmp_path):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, 9, 11, generator=g)
    masks = torch.randint(0, 5, (7, 9, 11), generator=g); masks[:, :2] = 255
    insts = torch.randint(0, 4, (7, 9, 11), generator=g)
    # uneven: rank 0 gets batches of 3 and 2 images, rank 1 one batch of 2
    shards = [[(logits[:3], masks[:3], insts[:3]), (logits[3:5], masks[3:5], insts[3:5])], [(logits[5:], masks[5:], insts[5:])]]
    run_gloo(_worker, 2, shards, str(tmp_path))
    single = SegMetrics(5, which=('miou', 'miiou'), avg_class_size=[np.nan, 7., np.nan, 3., np.nan])
    single.update(logits, masks, insts)
    want = [single.scores()['miou'], single.scores()['miiou']]
    for r in range(2):
        res = torch.load(tmp_path/f'{r}.pt')
        assert torch.equal(res['cm'], single.counts()[0])
        np.testing.assert_allclose(res['values'], want, rtol=0, atol=1e-12)
