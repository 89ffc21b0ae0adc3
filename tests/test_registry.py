"""A newcomer's architecture, registered in this file alone, trained, evaluated and predicted through `seg_learner` and the
command line (`--plugin tests/test_registry.py`) without touching any library file; and the recipes read back as the
authors' code has them."""
import json, subprocess
from pathlib import Path
import numpy as np
import torch
from torch import nn

from boundaryseg.models.registry import SegModel, register_arch, ARCHS
from boundaryseg.recipes import get_recipe
from boundaryseg.losses import seg_loss

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'


class ToyHead(nn.Module):
    "A 3x3 conv on the last side for the classes, and a training-only 'blob' output (a second loss term)."
    def __init__(self, in_chs, n_classes):
        super().__init__()
        self.cls, self.blob = nn.Conv2d(in_chs[-1], n_classes, 3, padding=1), nn.Conv2d(in_chs[-1], 1, 1)
    def forward(self, feats): return {'seg': self.cls(feats[-1]), 'blob': self.blob(feats[-1])}


def blob_loss(pred, mask, reduction='mean', **targets):
    "Predict where the mask is ignored (any pixel-wise target works)."
    y = (mask == 255).float()[:, None]
    l = nn.functional.binary_cross_entropy_with_logits(pred, y, reduction='none').flatten(1).mean(1)
    return l.mean() if reduction == 'mean' else l


from boundaryseg.losses import register_loss  # noqa: E402
register_loss('toy_blob', lambda n_classes, **kw: blob_loss)


@register_arch('toy', outputs={'seg': 'eval', 'blob': 'train'}, losses={'seg': ('ce', 1.), 'blob': ('toy_blob', 0.5)},
               metrics=('miou', 'acc'), recipe='main', doc='a test architecture: one conv on the last side')
def build_toy(backbone, n_classes, norm='bn', width=None):
    return SegModel(backbone, ToyHead(backbone.channels, n_classes))


def test_toy_through_seg_learner(tmp_path):
    from boundaryseg.data.block import seg_dataloaders
    from boundaryseg.learner import seg_learner
    from boundaryseg.inference import evaluate, predict_image, save_model, load_model
    dls = seg_dataloaders('synthetic', tmp_path/'synth', size=(64, 128), bs=4, n_train=4, n_val=2, image_size=(64, 128), seed=0, device='cpu')
    learn = seg_learner(dls, 'toy', backbone='test_resnet', path=tmp_path/'run', checkpoint=None)
    assert learn.recipe.name == 'main' and learn.loss_func.weights == {'seg': 1., 'blob': 0.5}
    learn.fit(1)
    assert {'train_seg', 'train_blob'} <= set(learn.recorder.metric_names)
    assert np.isfinite(learn.recorder.values[-1][0])
    res = evaluate(learn.model, dls.valid.dataset.reader, 19, progress=False)
    assert 0 <= res['miou'] <= 1 and res['n_images'] == 2
    pred = predict_image(learn.model, dls.valid.dataset.reader[0]['img'])
    assert set(pred) == {'seg'} and pred['seg'].shape == (64, 128)
    net, _ = load_model(save_model(learn.model, tmp_path/'m.pth'), device='cpu')
    img = dls.valid.dataset.reader[1]['img']
    np.testing.assert_array_equal(predict_image(net, img)['seg'], predict_image(learn.model, img)['seg'])


def _cli(*args, cwd):
    r = subprocess.run([str(EXE), '--plugin', str(Path(__file__)), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_toy_through_the_cli(tmp_path):
    assert 'toy ' in _cli('train', '--help', cwd=tmp_path).stdout
    # 8 training and 2 validation scenes (the synthetic reader's options; default 100 and 20): `eval` and `predict` must
    # cover the whole validation split, whatever its size
    _cli('train', '--arch', 'toy', '--backbone', 'test_resnet', '--root', tmp_path/'synth', '--data_opt', 'n_train=8', '--data_opt', 'n_val=2',
         '--epochs', 1, '--size', '64,128',
         '--bs', 4, '--out', tmp_path/'run', cwd=tmp_path)
    assert (tmp_path/'run'/'model.pth').exists() and (tmp_path/'run'/'history.csv').exists()
    assert 'train_blob' in (tmp_path/'run'/'history.csv').read_text().splitlines()[0]
    _cli('eval', tmp_path/'run'/'model.pth', '--root', tmp_path/'synth', '--out', tmp_path/'ev', cwd=tmp_path)
    m = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert m['n_images'] == 2 and 0 <= m['miou'] <= 1
    _cli('predict', tmp_path/'run'/'model.pth', tmp_path/'synth'/'leftImg8bit'/'val', '--recursive', '--out', tmp_path/'pr', cwd=tmp_path)
    assert len(list((tmp_path/'pr'/'trainIds').rglob('*.png'))) == 2


def test_fastfcn_aux_weights_per_head():
    # FastFCN's scripts: --aux-weight 0.4 for PSP and DeepLabV3; EncNet keeps the default 0.2, and its SE-loss 0.2
    assert seg_loss('fastfcn_psp').weights == {'seg': 1., 'aux': .4}
    assert seg_loss('fastfcn_deeplabv3').weights == {'seg': 1., 'aux': .4}
    assert seg_loss('fastfcn_encnet').weights == {'seg': 1., 'aux': .2, 'se': .2}


def test_sbcb_recipe_as_its_code():
    r = get_recipe(ARCHS['deeplabv3plus'].recipe)
    assert r.name == 'sbcb'
    assert (r.opt, r.lr, r.momentum, r.wd, r.l2) == ('sgd', 0.01, 0.9, 5e-4, True)
    assert (r.schedule, r.power, r.min_lr, r.head_lr_mult, r.aux) == ('poly', 0.9, 1e-4, 1., False)
    f = get_recipe('fastfcn')
    assert (f.wd, f.head_lr_mult, f.aux, f.min_lr) == (1e-4, 10., True, 0.)


def test_sbcb_recipe_in_the_learner(tmp_path):
    "seg_learner with SBCB's recipe: no aux head or term, one lr for every group, L2 5e-4, the lr never below 1e-4."
    from fastai.callback.core import Callback
    from boundaryseg.learner import seg_learner
    from boundaryseg.test_utils import tiny_dls
    class LRs(Callback):
        order = 61
        def before_fit(self): self.lrs = []
        def before_batch(self):
            if self.training: self.lrs.append([h['lr'] for h in self.opt.hypers])
    dls = tiny_dls(8, 4)
    learn = seg_learner(dls, 'psp', backbone='test_resnet', n_classes=3, path=tmp_path, checkpoint=None, metrics=[], width=16)
    assert 'aux' not in learn.model.train_heads and learn.loss_func.names == ['seg']
    rec = LRs()
    learn.fit(2, cbs=rec)
    lrs = np.array(rec.lrs)
    assert np.allclose(lrs[:, 0], lrs[:, 1]) and lrs.min() > 1e-4 and abs(lrs[0, 0] - 0.01) < 1e-12
    T = len(lrs)
    assert np.allclose(lrs[:, 0], (0.01 - 1e-4) * (1 - np.arange(T) / T) ** 0.9 + 1e-4)
    assert [g['weight_decay'] for g in learn.opt.opt.param_groups] == [5e-4, 5e-4]
    assert isinstance(learn.opt.opt, torch.optim.SGD)
