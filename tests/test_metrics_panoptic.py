"""Panoptic metrics vs panopticapi's pq_compute and cityscapesscripts' panoptic evaluator, properties, COCO AP, gloo."""
import copy, json, shutil
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from boundaryseg.core import load_ids, load_rgb_ids, fixtures_path, save_png, rgb2id, id2rgb
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.metrics.panoptic import (PanopticMetrics, pq_stats, pq_scores, pq_from_files, panoptic_quality,
                                          sem_inst_to_panoptic, panoptic_instances, coco_mask_ap, panoptic_categories)
from conftest import ref_run, run_gloo, feed_views

FX = fixtures_path()
COCO = FX/'coco_panoptic'/'sample_data'
FRAME = 'frankfurt_000000_000294'
CS_GT = FX/'cityscapes'/'gtFine'/'val'/'frankfurt'


def max_diff(mine, ref, key_map=None):
    "Max abs difference over All/Things/Stuff pq, sq, rq and per-class pq, sq, rq; `n` must be equal."
    d = []
    for part in ('All', 'Things', 'Stuff'):
        assert mine[part]['n'] == ref[part]['n'], (part, mine[part]['n'], ref[part]['n'])
        d += [abs(mine[part][k] - ref[part][k]) for k in ('pq', 'sq', 'rq')]
    for cid, v in ref['per_class'].items():
        m = mine['per_class'][key_map(int(cid)) if key_map else int(cid)]
        d += [abs(m[k] - v[k]) for k in ('pq', 'sq', 'rq')]
    assert len(ref['per_class']) == len(mine['per_class'])
    return max(d)


# ---------------------------------------------------------------- COCO panoptic: perturbed predictions
def perturb_coco(pan, segs, cats, rng, kind):
    "A wrong prediction made from a COCO panoptic ground truth (ids re-drawn at random, so ids never line up)."
    pan, segs = pan.copy(), [dict(id=s['id'], category_id=s['category_id']) for s in segs]
    ids = [s['id'] for s in segs]
    thing_ids = [c['id'] for c in cats if c['isthing']]
    by_id = {s['id']: s for s in segs}
    H, W = pan.shape
    if kind in ('drop', 'mix'):  # dropped segments become VOID
        for i in rng.choice(ids, max(1, len(ids) // 4), replace=False): pan[pan == i] = 0; by_id.pop(i)
    if kind in ('merge', 'mix'):  # segments of one category merged into one
        for c in {s['category_id'] for s in by_id.values()}:
            same = [i for i, s in by_id.items() if s['category_id'] == c]
            if len(same) > 1:
                for i in same[1:3]: pan[pan == i] = same[0]; by_id.pop(i)
    if kind in ('shift', 'mix'):  # whole map shifted, and a few segments shifted on their own
        pan = np.roll(pan, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), (0, 1))
        for i in rng.choice(list(by_id), min(3, len(by_id)), replace=False):
            m = np.roll(pan == i, (int(rng.integers(-15, 16)), int(rng.integers(-15, 16))), (0, 1))
            pan[pan == i] = 0; pan[m] = i
    if kind in ('relabel', 'mix'):  # categories changed
        for i in rng.choice(list(by_id), max(1, len(by_id) // 3), replace=False):
            by_id[i]['category_id'] = int(rng.choice(thing_ids if rng.random() < 0.5 else [c['id'] for c in cats]))
    if kind in ('split', 'mix'):  # a segment split into two
        for i in rng.choice(list(by_id), min(3, len(by_id)), replace=False):
            ys, xs = np.nonzero(pan == i)
            if len(xs) < 2: continue
            new = max(by_id) + 1
            pan[(pan == i) & (np.arange(W)[None] > np.median(xs))] = new
            by_id[new] = dict(id=new, category_id=by_id[i]['category_id'])
    if kind in ('extra', 'mix'):  # new rectangles of random categories, some on VOID
        for _ in range(4):
            y, x = int(rng.integers(0, H - 20)), int(rng.integers(0, W - 20))
            new = max(by_id, default=0) + 1
            pan[y:y + int(rng.integers(5, 60)), x:x + int(rng.integers(5, 60))] = new
            by_id[new] = dict(id=new, category_id=int(rng.choice([c['id'] for c in cats])))
    present = set(np.unique(pan).tolist())
    segs = [s for i, s in by_id.items() if i in present]
    # random new ids (up to 2^24-1), so prediction ids are unrelated to ground-truth ids
    new_ids = rng.choice(np.arange(1, 2**24), len(segs), replace=False)
    lut = {s['id']: int(n) for s, n in zip(segs, new_ids)}
    out = np.zeros_like(pan)
    for old, new in lut.items(): out[pan == old] = new
    for s in segs: s['id'] = lut[s['id']]
    return out, segs


def coco_gt():
    gj = json.loads((COCO/'panoptic_examples.json').read_text())
    pans = [rgb2id(load_rgb_ids(COCO/'panoptic_examples'/a['file_name'])) for a in gj['annotations']]
    return gj, pans


def write_coco(d, gj, anns, pans):
    "A COCO panoptic json + PNG folder."
    d.mkdir(parents=True)
    for a, p in zip(anns, pans): save_png(id2rgb(p), d/a['file_name'])
    j = dict(gj, annotations=anns)
    (d.parent/f'{d.name}.json').write_text(json.dumps(j))
    return str(d.parent/f'{d.name}.json'), str(d)


def test_equals_pq_compute_and_cityscapes_on_coco(tmp_path):
    gj, pans = coco_gt()
    cats = gj['categories']
    cases, mine = [], {}
    gt_json, gt_folder = str(COCO/'panoptic_examples.json'), str(COCO/'panoptic_examples')
    # a crowd variant of the ground truth: a few more segments marked crowd (a person and the largest thing segments)
    gj_crowd = copy.deepcopy(gj)
    for a in gj_crowd['annotations']:
        things = sorted((s for s in a['segments_info'] if s['category_id'] in {c['id'] for c in cats if c['isthing']}), key=lambda s: -s['area'])
        for s in things[:2]: s['iscrowd'] = 1
    crowd_json = tmp_path/'gt_crowd.json'
    crowd_json.write_text(json.dumps(gj_crowd))
    kinds = ['drop', 'merge', 'shift', 'relabel', 'split', 'extra', 'mix', 'mix']
    for k, kind in enumerate(kinds):
        rng = np.random.default_rng(k)
        g = gj_crowd if k >= len(kinds) - 2 else gj  # the last two cases against the crowd ground truth
        g_json = str(crowd_json) if g is gj_crowd else gt_json
        preds = [perturb_coco(p, a['segments_info'], cats, rng, kind) for p, a in zip(pans, g['annotations'])]
        anns = [dict(image_id=a['image_id'], file_name=a['file_name'], segments_info=s) for a, (_, s) in zip(g['annotations'], preds)]
        pj, pf = write_coco(tmp_path/f'pred_{k}', gj, anns, [p for p, _ in preds])
        for op in ('pq_compute', 'cityscapes'):
            cases.append(dict(name=f'{kind}{k}|{op}', op=op, gt_json=g_json, gt_folder=gt_folder, pred_json=pj, pred_folder=pf,
                              results_file=str(tmp_path/f'cs_{k}.json')))
        from_files = pq_from_files(g_json, pj, gt_folder, pf)
        from_arrays = panoptic_quality([(p, a['segments_info']) for p, a in zip(pans, g['annotations'])], preds, cats)
        assert json.dumps(from_files, sort_keys=True) == json.dumps(from_arrays, sort_keys=True)  # NaN-aware equality
        mine[f'{kind}{k}'] = from_files
    ref = ref_run('ref_panoptic.py', {'cases': cases}, tmp_path)
    diffs = {c['name']: max_diff(mine[c['name'].split('|')[0]], ref[c['name']]) for c in cases}
    print('max abs diff per case:', diffs)
    assert max(diffs.values()) < 1e-6, diffs
    # the perturbations must exercise every kind of count
    st_all = [mine[n]['All'] for n in mine]
    assert all(0 < s['pq'] < 1 for s in st_all)


# ---------------------------------------------------------------- Cityscapes: createPanopticImgs + evaluatePanoptic
def perturb_cs(sem, inst, rng):
    "A wrong (sem, inst) prediction from Cityscapes ground truth (train ids; raw instance ids >= 1000)."
    s, i = sem.copy(), np.where(inst >= 1000, inst, 0)
    s[s == 255] = rng.integers(0, 19)
    H, W = s.shape
    for _ in range(rng.integers(2, 6)):
        y, x = rng.integers(0, H), rng.integers(0, W)
        s[y:y + rng.integers(2, H // 3), x:x + rng.integers(2, W // 3)] = rng.integers(0, 19)
    ids = np.unique(i[i > 0])
    if len(ids) >= 2: i[i == ids[1]] = ids[0]                       # two instances merged
    if len(ids) >= 3: i[i == ids[2]] = 0                            # one instance lost (-> VOID)
    i = np.roll(i, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), (0, 1))  # instances shifted
    i[(i == 0) & CITYSCAPES.thing[np.minimum(s, 18)] & (rng.random(s.shape) < 0.5)] = 77  # stray thing pixels
    return s.astype(np.int64), i


def cityscapes_frames(tmp_path):
    "The fixture frame's GT as three Cityscapes val frames under tmp_path, and three perturbed predictions of it."
    lbl, inst = load_ids(CS_GT/f'{FRAME}_gtFine_labelIds.png'), load_ids(CS_GT/f'{FRAME}_gtFine_instanceIds.png')
    gsem = CITYSCAPES.encode(lbl).astype(np.int64)
    frames = [f'frankfurt_{k:06d}_{k:06d}' for k in range(3)]
    city = tmp_path/'gtFine'/'val'/'frankfurt'
    city.mkdir(parents=True)
    for f in frames: shutil.copy(CS_GT/f'{FRAME}_gtFine_instanceIds.png', city/f'{f}_gtFine_instanceIds.png')
    return gsem, inst, frames, city, [perturb_cs(gsem, inst, np.random.default_rng(s)) for s in range(3)]


def test_equals_cityscapes_panoptic(tmp_path):
    gsem, inst, frames, city, preds = cityscapes_frames(tmp_path)
    anns, pans = [], []
    for f, (s, i) in zip(frames, preds):
        pan, segs = sem_inst_to_panoptic(s, i, CITYSCAPES, no_inst='void', cat_ids=CITYSCAPES.train_to_native)
        anns.append(dict(image_id=f, file_name=f'{f}_panoptic.png', segments_info=segs)); pans.append(pan)
    gj = dict(categories=[])  # the json's categories are not read by the evaluators on the prediction side
    pj, pf = write_coco(tmp_path/'pred', gj, anns, pans)
    out = tmp_path/'gtpan'
    out.mkdir()
    ref = ref_run('ref_panoptic.py', {'cases': [
        dict(name='convert', op='convert_cityscapes', gtFine=str(tmp_path/'gtFine'), out_dir=str(out)),
        dict(name='eval', op='cityscapes', gt_json=str(out/'cityscapes_panoptic_val.json'), gt_folder=str(out/'cityscapes_panoptic_val'),
             pred_json=pj, pred_folder=pf, results_file=str(tmp_path/'res.json')),
        dict(name='pq', op='pq_compute', gt_json=str(out/'cityscapes_panoptic_val.json'), gt_folder=str(out/'cityscapes_panoptic_val'),
             pred_json=pj, pred_folder=pf)]}, tmp_path)
    pm = PanopticMetrics(CITYSCAPES, min_inst=1000)
    for s, i in preds: pm.update(s, i, gsem, inst)
    r = pm.scores()
    mine = {part: dict(pq=r[f'pq{sfx}'], sq=r[f'sq{sfx}'], rq=r[f'rq{sfx}'], n=r[f'n{sfx}'])
            for part, sfx in (('All', ''), ('Things', '_th'), ('Stuff', '_st'))}
    mine['per_class'] = r['per_class']
    to_train = {int(n): k for k, n in enumerate(CITYSCAPES.train_to_native)}
    d = max(max_diff(mine, ref['eval'], to_train.get), max_diff(mine, ref['pq'], to_train.get))
    print('max abs diff:', d)
    assert d < 1e-6
    # and our ground-truth conversion equals createPanopticImgs' (as segments: same pixels, categories, crowd flags)
    cj = json.loads((out/'cityscapes_panoptic_val.json').read_text())
    ref_pan = rgb2id(load_rgb_ids(out/'cityscapes_panoptic_val'/f'{frames[0]}_gtFine_panoptic.png'))
    pan, segs = sem_inst_to_panoptic(gsem, inst, CITYSCAPES, min_inst=1000, cat_ids=CITYSCAPES.train_to_native)
    st_same = pq_stats(ref_pan, cj['annotations'][0]['segments_info'], pan, segs, CITYSCAPES)
    assert st_same[:, 2:4].sum() == 0 and np.allclose(st_same[:, 0], st_same[:, 1])  # every segment matched with IoU 1
    crowd_ref = sorted((s['category_id'], s['area']) for s in cj['annotations'][0]['segments_info'] if s['iscrowd'])
    assert crowd_ref == sorted((s['category_id'], s['area']) for s in segs if s['iscrowd'])


# ---------------------------------------------------------------- properties
@st.composite
def sem_inst(draw, C=4):
    H, W = draw(st.integers(2, 10)), draw(st.integers(2, 10))
    arr = lambda vals: np.array(draw(st.lists(vals, min_size=H * W, max_size=H * W)), np.int64).reshape(H, W)
    return arr(st.sampled_from([*range(C), 255])), arr(st.integers(0, 3)), arr(st.sampled_from([*range(C), 255])), arr(st.integers(0, 3))

THING = np.array([False, True, False, True])


def _segs(sem, inst, no_inst):
    return sem_inst_to_panoptic(sem, inst, THING, no_inst=no_inst)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sem_inst(), st.permutations(range(4)), st.integers(0, 2**31 - 1))
def test_properties(x, perm, seed):
    gs, gi, ps, pi = x
    cats = [dict(id=k, isthing=int(t)) for k, t in enumerate(THING)]
    g, p = _segs(gs, gi, 'crowd'), _segs(ps, pi, 'void')
    r = pq_scores(pq_stats(*g, *p, cats), THING)
    for part in ('All', 'Things', 'Stuff'):
        for k in ('pq', 'sq', 'rq', 'pq_dagger'):
            assert np.isnan(r[part][k]) or 0 <= r[part][k] <= 1 + 1e-12
    # perfect prediction (crowd regions predicted as anything): PQ = SQ = RQ = PQ† = 1 when there is a non-crowd segment
    perfect = pq_scores(pq_stats(*g, *g, cats), THING)
    if any(not s['iscrowd'] for s in g[1]):
        assert perfect['All']['pq'] == perfect['All']['sq'] == perfect['All']['rq'] == perfect['All']['pq_dagger'] == 1
    # segment ids are names: permuting them (and the segments_info order) changes nothing
    rng = np.random.default_rng(seed)
    new = rng.choice(np.arange(1, 10**6), len(p[1]), replace=False)
    lut = np.append(0, new)
    p2 = (lut[p[0]], [dict(s, id=int(new[s['id'] - 1])) for s in p[1]][::-1])
    np.testing.assert_allclose(pq_stats(*g, *p2, cats), pq_stats(*g, *p, cats), rtol=1e-12)  # IoU sums: order of addition
    # relabelling classes consistently in GT and prediction (thing flags follow) permutes the per-class counts
    lut_c = np.full(256, 255); lut_c[:4] = perm
    thing2 = np.zeros(4, bool); thing2[list(perm)] = THING
    g3 = sem_inst_to_panoptic(lut_c[gs], gi, thing2, no_inst='crowd')
    p3 = sem_inst_to_panoptic(lut_c[ps], pi, thing2, no_inst='void')
    st3 = pq_stats(*g3, *p3, [dict(id=k, isthing=int(t)) for k, t in enumerate(thing2)])
    np.testing.assert_allclose(st3[list(perm)], pq_stats(*g, *p, cats))
    # PQ† of thing classes is their PQ
    for k in np.flatnonzero(THING): assert r['per_class'][k]['pq_dagger'] == r['per_class'][k]['pq']


def test_coco_instances_equal_panopticapi_detection_format():
    "Our thing instances from the panoptic PNGs equal the official detection-format conversion of the same sample."
    from pycocotools import mask as mask_util
    gj, pans = coco_gt()
    det = json.loads((COCO/'panoptic_coco_detection_format.json').read_text())
    for a, pan in zip(gj['annotations'], pans):
        inst = panoptic_instances(pan, a['segments_info'], gj['categories'])
        ref = [d for d in det['annotations'] if d['image_id'] == a['image_id'] and d['category_id'] in {c['id'] for c in gj['categories'] if c['isthing']}]
        assert len(ref) == len(inst['masks'])
        for d in ref:
            seg = d['segmentation']
            m = mask_util.decode(mask_util.frPyObjects(seg, *pan.shape) if isinstance(seg, list) else seg).astype(bool)
            hits = [k for k in range(len(inst['masks'])) if (inst['masks'][k] == m).all()]
            assert len(hits) == 1 and inst['labels'][hits[0]] == d['category_id'] and inst['iscrowd'][hits[0]] == d['iscrowd']


def test_coco_mask_ap():
    gj, pans = coco_gt()
    cats = gj['categories']
    gts = [(p, a['segments_info']) for p, a in zip(pans, gj['annotations'])]
    perfect = [panoptic_instances(*g, cats) for g in gts]
    perfect = [dict(p, masks=p['masks'][p['iscrowd'] == 0], labels=p['labels'][p['iscrowd'] == 0], scores=p['scores'][p['iscrowd'] == 0]) for p in perfect]
    assert coco_mask_ap(gts, perfect, cats)['AP'] == pytest.approx(1.0)
    # drop half of each image's instances: recall halves and AP falls, but stays positive
    half = [dict(masks=p['masks'][::2], labels=p['labels'][::2], scores=p['scores'][::2]) for p in perfect]
    ap = coco_mask_ap(gts, half, cats)['AP']
    assert 0 < ap < 1


# ---------------------------------------------------------------- distributed
def _worker(rank, world, shards, out):
    pm = PanopticMetrics(THING, which=('pq', 'pq_dagger', 'miou'))
    torch.save({'values': feed_views(pm, 'panoptic', shards[rank]), 'stats': pm.counts()[0]}, f'{out}/{rank}.pt')


def test_two_process_gloo_equals_one_process(tmp_path):
    g = torch.Generator().manual_seed(0)
    blocks = lambda hi: torch.randint(0, hi, (6, 4, 5), generator=g).repeat_interleave(3, 1).repeat_interleave(3, 2)
    gs, gi, ps, pi = blocks(4), blocks(3), blocks(4), blocks(3)
    gs[:, :2] = 255
    pred = ps * 1000 + pi
    shards = [[(pred[:2], gs[:2], gi[:2]), (pred[2:5], gs[2:5], gi[2:5])], [(pred[5:], gs[5:], gi[5:])]]
    run_gloo(_worker, 2, shards, str(tmp_path))
    single = PanopticMetrics(THING)
    single.update(ps, pi, gs, gi)
    s = single.scores()
    for r in range(2):
        res = torch.load(tmp_path/f'{r}.pt', weights_only=False)
        np.testing.assert_allclose(res['stats'], single.counts()[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res['values'], [s['pq'], s['pq_dagger'], s['miou']], rtol=0, atol=1e-12)


# ---------------------------------------------------------------- PQ† vs torchmetrics' ModifiedPanopticQuality
def test_pq_dagger_doc_example_of_torchmetrics():
    "torchmetrics' documented example (things {0, 1}, stuffs {6, 7}): 0.7667 = mean(0.8, 0.5, 1.0)."
    from torchmetrics.detection import ModifiedPanopticQuality  # a dev requirement (requirements.txt)
    preds = np.array([[[0, 0], [0, 1], [6, 0], [7, 0], [0, 2], [1, 0]]])
    target = np.array([[[0, 1], [0, 0], [6, 0], [7, 0], [6, 0], [255, 0]]])
    ref = float(ModifiedPanopticQuality(things={0, 1}, stuffs={6, 7})(torch.tensor(preds), torch.tensor(target)))
    cats = [dict(id=c, isthing=int(c in (0, 1))) for c in (0, 1, 6, 7)]
    # (category, instance) pairs as segments; target category 255 is VOID; instance 0 of a thing is an instance too
    def pan(x):
        keys = [tuple(v) for v in x.reshape(-1, 2)]
        uniq = [k for k in dict.fromkeys(keys) if k[0] != 255]
        ids = np.array([uniq.index(k) + 1 if k in uniq else 0 for k in keys]).reshape(1, -1)  # one row of pixels
        return ids, [dict(id=i + 1, category_id=int(k[0]), iscrowd=0) for i, k in enumerate(uniq)]
    r = pq_scores(pq_stats(*pan(target[0]), *pan(preds[0]), cats), np.array([c['isthing'] for c in cats], bool))
    assert r['All']['pq_dagger'] == pytest.approx((0.8 + 0.5 + 1.0) / 3, abs=1e-12)
    assert ref == pytest.approx(r['All']['pq_dagger'], abs=1e-6)  # torchmetrics divides in float32


def _random_pair(rng, H=24, W=32, C=5, thing=(False, True, False, True, False)):
    "A random ground truth (blocks of classes, instances for every thing pixel, some VOID) and a random prediction without VOID."
    def blocks(n):
        sem = np.zeros((H, W), np.int64); inst = np.zeros((H, W), np.int64)
        for _ in range(n):
            y, x, h, w = rng.integers(0, H), rng.integers(0, W), rng.integers(2, H), rng.integers(2, W)
            c = int(rng.integers(0, C)); sem[y:y + h, x:x + w] = c; inst[y:y + h, x:x + w] = rng.integers(1, 4) if thing[c] else 0
        return sem, inst
    gs, gi = blocks(int(rng.integers(2, 9)))
    th = np.asarray(thing)[gs]
    gi = np.where(th & (gi == 0), 1, gi)
    gs = np.where(rng.random((H, W)) < 0.03, 255, gs)  # scattered VOID pixels in the ground truth only
    gs[:, :int(rng.integers(0, 5))] = 255
    ps, pi = blocks(int(rng.integers(2, 9)))
    pi = np.where(np.asarray(thing)[ps] & (pi == 0), 1, pi)
    return gs, gi, ps, pi


def test_pq_dagger_equals_torchmetrics_on_random_pairs():
    """PQ† (and PQ) equal torchmetrics' ModifiedPanopticQuality (PanopticQuality) on random pairs without predicted VOID
    and without crowd. torchmetrics departs from panopticapi on predicted VOID (it takes a ground-truth segment's pixels
    predicted VOID out of the union, and does not count a ground-truth segment more than half predicted VOID as a FN),
    so predictions here cover every pixel."""
    import torchmetrics.detection as tm
    thing = np.array([False, True, False, True, False])
    things, stuffs = set(np.flatnonzero(thing).tolist()), set(np.flatnonzero(~thing).tolist())
    rng = np.random.default_rng(0)
    cats = [dict(id=c, isthing=int(t)) for c, t in enumerate(thing)]
    checked = 0
    for trial in range(30):
        pairs = [_random_pair(rng) for _ in range(int(rng.integers(1, 4)))]
        stats = sum(pq_stats(*sem_inst_to_panoptic(gs, gi, thing), *sem_inst_to_panoptic(ps, pi, thing, no_inst='void'), cats)
                    for gs, gi, ps, pi in pairs)
        mine = pq_scores(stats, thing)
        tgt = torch.tensor(np.stack([np.stack([gs, np.where(gs == 255, 0, gi)], -1) for gs, gi, _, _ in pairs]))
        prd = torch.tensor(np.stack([np.stack([ps, pi], -1) for _, _, ps, pi in pairs]))
        ref_d = float(tm.ModifiedPanopticQuality(things=things, stuffs=stuffs)(prd, tgt))
        ref = float(tm.PanopticQuality(things=things, stuffs=stuffs)(prd, tgt))
        if np.isnan(ref_d): continue
        assert mine['All']['pq_dagger'] == pytest.approx(ref_d, abs=1e-6), trial  # torchmetrics divides in float32
        assert mine['All']['pq'] == pytest.approx(ref, abs=1e-6), trial
        checked += 1
    assert checked >= 25
