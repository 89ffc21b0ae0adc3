"""SBCB's on-the-fly boundary targets through the data pipeline (reader -> `void` field -> crop + flip -> batch ->
`boundary_targets`) against pyEdgeEval's `mask2edge` on the same crop of the raw Cityscapes label ids (ignore ids 2, 3;
instance-sensitive for the thing classes), pixel for pixel, on the real fixture."""
import numpy as np
import torch

from boundaryseg.core import fixtures_path, load_ids, load_image, IMAGENET_MEAN, IMAGENET_STD
from boundaryseg.data.block import seg_dataloaders
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.data.boundaries import boundary_targets
from conftest import ref_run

FX = fixtures_path()
STEM = 'frankfurt/frankfurt_000000_000294'
CS_INST_LABELS = [24, 25, 26, 27, 28, 31, 32, 33]


def find_window(xb, img):
    "The (flip, top, left) of the crop `xb` (normalised (3,h,w)) in the uint8 image (H,W,3)."
    x = xb.cpu().float() * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    h, w = x.shape[-2:]
    src = torch.from_numpy(img).permute(2, 0, 1).float()
    hits = []
    for flip in (False, True):
        s = src.flip(-1) if flip else src
        for t in range(s.shape[1] - h + 1):
            for l in range(s.shape[2] - w + 1):
                if (s[:, t, l] - x[:, 0, 0]).abs().max() > 1.5: continue
                if (s[:, t:t + h, l:l + w] - x).abs().max() < 1.5: hits.append((flip, t, l))
    assert len(hits) == 1, hits
    return hits[0]


def test_pipeline_targets_equal_pyedgeeval(tmp_path):
    img = load_image(FX/'cityscapes'/'leftImg8bit'/'val'/f'{STEM}_leftImg8bit.png')
    lab = load_ids(FX/'cityscapes'/'gtFine'/'val'/f'{STEM}_gtFine_labelIds.png')
    inst = load_ids(FX/'cityscapes'/'gtFine'/'val'/f'{STEM}_gtFine_instanceIds.png')
    crops, ours = [], []
    for seed in range(6):
        dls = seg_dataloaders('cityscapes', FX/'cityscapes', size=(96, 176), bs=1, scale=(1.0, 1.0), photometric=False, seed=seed,
                              train_split='val', valid_split='val', targets=('mask', 'inst', 'void'), device='cpu')
        xb, yb, ib, vb = dls.train.one_batch()
        flip, t, l = find_window(xb[0], img)
        crop = lambda a: (a[:, ::-1] if flip else a)[t:t + 96, l:l + 176]
        crops.append((flip, crop(lab), crop(inst)))
        ours.append(boundary_targets(yb, 19, inst=ib, void=vb, radius=2)[0].numpy())
        # the mask is the reader's train ids on the same window, void pixels are ignore in it
        np.testing.assert_array_equal(yb[0].numpy(), CITYSCAPES.encode(crop(lab)))
        np.testing.assert_array_equal(vb[0].numpy().astype(bool), CITYSCAPES.void_mask(crop(lab)))
    assert {f for f, _, _ in crops} == {False, True}, "both flipped and unflipped crops are exercised"
    np.savez(tmp_path/'crops.npz', mask=np.stack([c[1] for c in crops]), inst=np.stack([c[2] for c in crops]))
    ref_run('ref_boundary_gt.py', {'jobs': [dict(op='edges', **{'in': str(tmp_path/'crops.npz')}, labels=list(range(34)), ignore=[2, 3],
                                                 radius=2, use_cv2=True, inst_labels=CS_INST_LABELS, out=str(tmp_path/'ref.npy'))]}, tmp_path)
    ref = np.load(tmp_path/'ref.npy')[:, CITYSCAPES.train_to_native]  # pyEdgeEval's edge_label2trainId
    for i, (o, r) in enumerate(zip(ours, ref)):
        assert r.sum() > 0
        np.testing.assert_array_equal(o, r, err_msg=f"crop {i} (flip={crops[i][0]})")
    # without the void map the targets lose the borders against void labels (ego vehicle, static, ...)
    dls = seg_dataloaders('cityscapes', FX/'cityscapes', bs=1, train_split='val', valid_split='val', targets=('mask', 'inst', 'void'),
                          device='cpu', size=(96, 176))
    _, yb, ib, vb = dls.valid.one_batch()
    full, novoid = boundary_targets(yb, 19, inst=ib, void=vb), boundary_targets(yb, 19, inst=ib)
    assert (novoid <= full).all() and 0.05 < 1 - novoid.sum().item() / full.sum().item() < 0.2


def test_sbd_metrics_from_fastai_batches_equal_pyedgeeval(tmp_path):
    """MF-ODS of `SBDMetrics` fed as fastai feeds it (the model's `edge` logits, the batch's mask / inst / void targets)
    equals pyEdgeEval on the same predictions against its own GT (`convert_cityscapes` of the label files), within the
    reference matcher's known spread. The fixture frame is upsampled 4x (512x1024) so the half-resolution tolerance is 2 px."""
    from PIL import Image
    from types import SimpleNamespace
    from boundaryseg.metrics.sbd import SBDMetrics
    from test_metrics_sbd import ref_eval, soft_from_gt, check_against_ref, ours
    root = tmp_path/'cs'
    up = lambda a: a.repeat(4, 0).repeat(4, 1)
    src = {k: FX/'cityscapes'/d/'val'/f'{STEM}_{k}.png' for k, d in (('leftImg8bit', 'leftImg8bit'), ('gtFine_labelIds', 'gtFine'),
                                                                     ('gtFine_instanceIds', 'gtFine'))}
    for k, d in (('leftImg8bit', 'leftImg8bit'), ('gtFine_labelIds', 'gtFine'), ('gtFine_instanceIds', 'gtFine')):
        f = root/d/'val'/f'{STEM}_{k}.png'
        f.parent.mkdir(parents=True, exist_ok=True)
        a = load_image(src[k]) if k == 'leftImg8bit' else load_ids(src[k])
        Image.fromarray(up(a).astype(np.uint16 if k.endswith('instanceIds') else np.uint8)).save(f)
    ref_run('ref_pyedgeeval.py', dict(op='gt', label=str(root/'gtFine'/'val'/f'{STEM}_gtFine_labelIds.png'),
                                      inst=str(root/'gtFine'/'val'/f'{STEM}_gtFine_instanceIds.png'), out=str(tmp_path/'gt.npy'),
                                      radius=1, thin=True, convert_scale=0.5, eval_scale=1.0), tmp_path)
    gt = np.load(tmp_path/'gt.npy')
    pred = soft_from_gt(gt, np.random.default_rng(5))
    dls = seg_dataloaders('cityscapes', root, size=(256, 256), bs=1, train_split='val', valid_split='val', targets=('mask', 'inst', 'void'), device='cpu')
    _, yb, ib, vb = dls.valid.one_batch()
    assert yb.shape == (1, 512, 1024)
    logits = torch.logit(torch.from_numpy(pred).float()).repeat_interleave(2, -2).repeat_interleave(2, -1)[None]
    views = list(SBDMetrics(19, 'cityscapes-thin', which=('mf_ods', 'mf_ois', 'map'), thing_ids=CITYSCAPES.thing_ids.tolist(), quantize=True,
                            valid_fn=None))
    learn = SimpleNamespace(pred={'edge': logits}, yb=(yb, ib, vb), dls=SimpleNamespace(target_names=('mask', 'inst', 'void')), dl=None)
    for v in views: v.reset()
    for v in views: v.accumulate(learn)
    acc = views[0].acc
    rc, rm = ref_eval(tmp_path, pred[None], gt[None], max_dist=0.0035, apply_thinning=True)
    np.testing.assert_array_equal(acc.total[..., 1], rc.sum(0)[..., 1])  # the GT made from the batch is pyEdgeEval's
    check_against_ref(acc.total[None], acc.scores(), rc, rm)
    ref_mf = np.mean([m['ODS_f1'] for m in rm])
    assert abs(views[0].value - ref_mf) <= 0.002, (views[0].value, ref_mf)
    # without the void target the GT differs from pyEdgeEval's
    for v in views: v.reset()
    views[0].accumulate(SimpleNamespace(**{**vars(learn), 'yb': (yb, ib), 'dls': SimpleNamespace(target_names=('mask', 'inst'))}))
    assert views[0].acc.total[..., 1].sum() < rc.sum(0)[..., 1].sum()


def _scale_crop_reference(s, hw, top, left, size, ignore_index=255, img_pad=0):
    "`scale_crop` as first written: the whole image as float, 2-D advanced indexing of every field (the formulation the fast path must equal)."
    from boundaryseg.data.transforms import _linear_taps, _pad_value, nearest_index, LABEL_FIELDS
    (ch, cw), (H, W) = size, hw
    h, w = min(ch, H - top), min(cw, W - left)
    img = s['img']
    y0, y1, wy = _linear_taps(img.shape[1], H, top, h)
    x0, x1, wx = _linear_taps(img.shape[2], W, left, w)
    x = img.float()
    rows = x[:, y0] * (1 - wy)[:, None] + x[:, y1] * wy[:, None]
    out = {'img': _pad_value(img_pad)[:, None, None].repeat(1, ch, cw)}
    out['img'][:, :h, :w] = (rows[..., x0] * (1 - wx) + rows[..., x1] * wx).round_().clamp_(0, 255).to(torch.uint8)
    iy, ix = nearest_index(img.shape[1], H)[top:top + h], nearest_index(img.shape[2], W)[left:left + w]
    for k, fill in LABEL_FIELDS.items():
        if k not in s: continue
        out[k] = torch.full((ch, cw), ignore_index if k == 'mask' else fill, dtype=s[k].dtype)
        out[k][:h, :w] = s[k][iy[:, None], ix[None, :]]
    return out


def test_scale_crop_equals_reference_formulation():
    """The fast `scale_crop` (uint8 row gathers, only the columns the window reads, `gather` on columns) equals the plain float
    formulation bit for bit, on the Cityscapes fixture upscaled to 2048x1024, for windows at every scale of the training range."""
    from boundaryseg.data.datasets import CityscapesDataset
    from boundaryseg.data.transforms import sample_to_tensors, scale_crop, scaled_size
    s = sample_to_tensors(CityscapesDataset(FX/'cityscapes', 'val')[0])
    up = lambda t: t.repeat_interleave(8, -2).repeat_interleave(8, -1)
    s = {**s, **{k: up(s[k]) for k in ('mask', 'inst', 'void')}}
    s['img'] = torch.nn.functional.interpolate(s['img'][None].float(), scale_factor=8, mode='bilinear')[0].round().to(torch.uint8)
    s['img'][0] ^= torch.randint(0, 8, s['img'].shape[1:], generator=torch.Generator().manual_seed(0), dtype=torch.uint8)  # fine detail
    g = torch.Generator().manual_seed(0)
    for ratio in (0.5, 0.73, 1.0, 1.37, 2.0, 0.3):
        hw = scaled_size((1024, 2048), ratio)
        for _ in range(2):
            top, left = int(torch.randint(0, hw[0], (), generator=g)), int(torch.randint(0, hw[1], (), generator=g))
            a, b = scale_crop(s, hw, top, left, (512, 1024), img_pad='mean'), _scale_crop_reference(s, hw, top, left, (512, 1024), img_pad='mean')
            for k in ('img', 'mask', 'inst', 'void'):
                assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (ratio, top, left, k)
