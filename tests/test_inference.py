"""Inference against independent references: a plain per-window loop (the mmsegmentation algorithm), a per-view
multi-scale/flip loop, property tests over sizes, and the official Cityscapes evaluator reading `predict_folder`'s
labelId PNGs."""
import shutil
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from hypothesis import given, settings, strategies as st

from boundaryseg.core import load_ids, load_image, fixtures_path, normalize
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.inference import (predict_whole, predict_slide, predict, predict_folder, predict_image,
                                   window_starts)
from conftest import ref_run

FX = fixtures_path()
FRAME = 'frankfurt_000000_000294'


class Net(nn.Module):
    "Two 3x3 convolutions: a receptive field of 5x5, so windows see different context near their edges; seg and edge outputs."
    eval_outputs = ('seg', 'edge')
    def __init__(self, c=5, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b, self.e = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, c, 3, padding=1), nn.Conv2d(8, 2, 3, padding=1)
    def forward(self, x):
        f = torch.relu(self.a(x))
        return {'seg': self.b(f), 'edge': self.e(f)}


def slide_loop(model, x, crop, stride, key='seg'):
    "The sliding-window algorithm written plainly: pad, one window at a time, sum logits, divide by the counts."
    (ch, cw), (sh, sw) = crop, stride
    B, _, H, W = x.shape
    ph, pw = max(H, ch), max(W, cw)
    xp = F.pad(x, (0, pw - W, 0, ph - H))
    out, cnt = None, torch.zeros(1, 1, ph, pw)
    nh, nw = max(ph - ch + sh - 1, 0) // sh + 1, max(pw - cw + sw - 1, 0) // sw + 1
    with torch.no_grad():
        for i in range(nh):
            for j in range(nw):
                y0, x0 = min(i * sh, ph - ch), min(j * sw, pw - cw)
                o = model(xp[:, :, y0:y0 + ch, x0:x0 + cw])[key]
                if out is None: out = torch.zeros(B, o.shape[1], ph, pw)
                out[:, :, y0:y0 + ch, x0:x0 + cw] += o
                cnt[:, :, y0:y0 + ch, x0:x0 + cw] += 1
    return (out / cnt)[..., :H, :W]


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), ch=st.integers(1, 24), cw=st.integers(1, 24), data=st.data())
def test_slide_matches_plain_loop(h, w, ch, cw, data):
    sh, sw = data.draw(st.integers(1, ch)), data.draw(st.integers(1, cw))
    m = Net().eval()
    x = torch.randn(2, 3, h, w)
    test = predict_slide(m, x, (ch, cw), (sh, sw), bs=data.draw(st.integers(1, 7)))
    for k in ('seg', 'edge'): torch.testing.assert_close(test[k], slide_loop(m, x, (ch, cw), (sh, sw), k), rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 60), crop=st.integers(1, 30), data=st.data())
def test_window_starts_cover(size, crop, data):
    stride = data.draw(st.integers(1, crop))
    s = window_starts(max(size, crop), crop, stride)
    cover = torch.zeros(max(size, crop), dtype=torch.long)
    for a in s.tolist(): cover[a:a + crop] += 1
    assert (cover > 0).all() and s[-1] + crop == max(size, crop)
    assert (s.diff() > 0).all() and (s.diff() <= stride).all()


def ms_loop(model, x, scales, flip, key='seg'):
    "Multi-scale + flip, one view at a time: softmax (sigmoid for boundaries), back to the input size, un-flip, mean."
    H, W = x.shape[-2:]
    views = []
    with torch.no_grad():
        for s in scales:
            xs = F.interpolate(x, size=(int(H * s + .5), int(W * s + .5)), mode='bilinear', align_corners=False)
            for f in ([False, True] if flip else [False]):
                o = model(xs.flip(-1) if f else xs)[key]
                p = o.softmax(1) if key == 'seg' else o.sigmoid()
                p = F.interpolate(p, size=(H, W), mode='bilinear', align_corners=False)
                views.append(p.flip(-1) if f else p)
    return torch.stack(views).mean(0)


@pytest.mark.parametrize('scales,flip', [((1.,), True), ((0.5, 0.75, 1., 1.25, 1.5, 1.75), True), ((0.6, 1.3), False)])
def test_multiscale_matches_plain_loop(scales, flip):
    m = Net().eval()
    x = torch.randn(2, 3, 23, 37)
    p = predict(m, x, scales=scales, flip=flip)
    for k in ('seg', 'edge'): torch.testing.assert_close(p[k], ms_loop(m, x, scales, flip, k), rtol=1e-5, atol=1e-6)


def test_multiscale_sliding_one_window_is_whole():
    "One window as large as the image makes sliding + flip equal whole + flip (the flipped view is batched with it)."
    m = Net().eval()
    x = torch.randn(2, 3, 20, 30)
    a, b = predict(m, x, flip=True, crop=(20, 30)), predict(m, x, flip=True)
    for k in ('seg', 'edge'): torch.testing.assert_close(a[k], b[k])


def test_batch_norm_model_eval_mode():
    "Prediction uses running statistics: a one-image batch and the same image inside a batch agree; the mode is restored."
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    m(torch.randn(8, 3, 16, 16))  # fill running stats
    class W(nn.Module):
        def __init__(s): super().__init__(); s.m = m
        def forward(s, x): return {'seg': s.m(x)}
    w = W().train()
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(predict_whole(w, x)['seg'][:1], predict_whole(w, x[:1])['seg'])
    assert w.training


class Oracle(nn.Module):
    "Ignores the image and returns one-hot logits of a fixed train-id map (the 'prediction' under test)."
    def __init__(self, ids, c=19):
        super().__init__()
        self.register_buffer('logits', F.one_hot(torch.as_tensor(ids).long(), c).permute(2, 0, 1)[None].float() * 10)
    def forward(self, x): return {'seg': self.logits.expand(x.shape[0], -1, -1, -1)}


def hand_iou(pred, gt, c=19):
    "IoU from a confusion matrix over valid pixels, written out here; NaN where a class is in neither map (as the evaluator)."
    v = gt != 255
    cm = np.bincount(gt[v].astype(int) * c + pred[v].astype(int), minlength=c * c).reshape(c, c)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid='ignore'): return np.where(union > 0, tp / union, np.nan)


def test_labelids_read_by_official_evaluator(tmp_path):
    "predict_folder's labelIds PNGs, read by cityscapesscripts' evaluator, score what the train ids score."
    src = tmp_path/'leftImg8bit'/'val'/'frankfurt'
    src.mkdir(parents=True)
    shutil.copy(FX/'cityscapes'/'leftImg8bit'/'val'/'frankfurt'/f'{FRAME}_leftImg8bit.png', src)
    gt_file = FX/'cityscapes'/'gtFine'/'val'/'frankfurt'/f'{FRAME}_gtFine_labelIds.png'
    gt = CITYSCAPES.encode(load_ids(gt_file))
    # a realistic prediction: the HRNet-OCR full-resolution output of the same frame, nearest-downsampled 8x
    full = load_ids(FX/'cityscapes_fullres_predictions'/'frankfurt'/f'{FRAME}_pred_labelIds.png')
    pred = CITYSCAPES.encode(full[4::8, 4::8])
    assert pred.shape == gt.shape and (pred != 255).all()
    out = tmp_path/'out'
    files = predict_folder(Oracle(pred), tmp_path/'leftImg8bit', out, spec=CITYSCAPES, progress=False)
    assert [f.name for f in files] == [f'{FRAME}_leftImg8bit.png']
    np.testing.assert_array_equal(load_ids(out/'trainIds'/'val'/'frankfurt'/f'{FRAME}_leftImg8bit.png'), pred)
    lab = out/'labelIds'/'val'/'frankfurt'/f'{FRAME}_leftImg8bit.png'
    cases = {'cases': [{'name': 'p', 'pred': [str(lab)], 'gt': [str(gt_file)], 'inst': False}]}
    ref = ref_run('ref_cityscapes_semantic.py', cases, tmp_path)['p']
    iou = hand_iou(pred, gt)
    for k, name in enumerate(CITYSCAPES.classes):
        a, b = iou[k], ref['classScores'][name]
        assert np.isnan(a) == np.isnan(b), name
        if not np.isnan(a): assert abs(a - b) < 1e-9, (name, a, b)
    assert abs(np.nanmean(iou) - ref['averageScoreClasses']) < 1e-9
    assert 0.3 < ref['averageScoreClasses'] < 0.9  # a real, imperfect prediction


def test_predict_folder_real_images(tmp_path):
    "Real JPEGs of several sizes (mmseg's pseudo dataset): every image predicted at its own size, one PNG per format."
    src = FX/'mmseg_pseudo_dataset'/'imgs'
    m = Net(c=19).eval()
    files = predict_folder(m, src, tmp_path, spec=CITYSCAPES, bs=3, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['color', 'edge', 'labelIds', 'trainIds']
    assert len(files) == len(list(src.glob('*.jpg')))
    for f in sorted(src.glob('*.jpg')):
        img = load_image(f)
        p = predict_image(m, img)
        np.testing.assert_array_equal(load_ids(tmp_path/'trainIds'/f.with_suffix('.png').name), p['seg'])
        np.testing.assert_array_equal(load_ids(tmp_path/'edge'/'class_002'/f.with_suffix('.png').name), np.round(p['edge'][1] * 255))
        assert load_image(tmp_path/'color'/f.with_suffix('.png').name).shape == img.shape


def test_normalize_matches_the_training_pipeline(tmp_path):
    "`normalize` gives exactly the tensors the fastai DataLoaders feed the model (validation: no augmentation)."
    from boundaryseg.data.block import seg_dataloaders
    for split in ('train', 'val'):
        for kind, f in (('leftImg8bit', 'leftImg8bit'), ('gtFine', 'gtFine_labelIds'), ('gtFine', 'gtFine_instanceIds')):
            d = tmp_path/kind/split/'frankfurt'
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(FX/'cityscapes'/kind/'val'/'frankfurt'/f'{FRAME}_{f}.png', d)
    dls = seg_dataloaders('cityscapes', tmp_path, size=(64, 128), bs=1, device='cpu')
    x, y = dls.valid.one_batch()[:2]
    img = load_image(tmp_path/'leftImg8bit'/'val'/'frankfurt'/f'{FRAME}_leftImg8bit.png')
    torch.testing.assert_close(normalize(img), torch.as_tensor(x), rtol=0, atol=1e-6)
