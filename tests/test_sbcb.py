"""SBCB: the training-only boundary head on every registered segmentation architecture (in eval: the baseline's
parameters and outputs, weights that load into the plain model), training through `seg_learner` with the boundary
terms, the single-task detectors through `evaluate` and the command line (per-class boundary PNGs), and bad input."""
import json
import subprocess
import warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

from boundaryseg.models.zoo import ARCHS, seg_model
from boundaryseg.data.block import seg_dataloaders
from boundaryseg.learner import seg_learner
from boundaryseg.inference import save_model, load_model
from boundaryseg.test_utils import tiny_dls

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'
SEMANTIC = [a for a, s in ARCHS.items() if 'seg' in s.eval_outputs]
n_params = lambda m: sum(p.numel() for p in m.parameters())


def _build(arch, **kw):
    "A small instance of `arch` (ResNet-18, narrow heads); panoptic models get the thing flags of their classes."
    if 'panoptic' in ARCHS[arch].tasks: kw['thing'] = (False, False, True, True, False)
    return seg_model(arch, 'resnet18', n_classes=5, width=16, **kw)


def _inputs(arch, x):
    "The image and the label maps the architecture reads besides it (MSCI: super-pixels), for one forward pass."
    g = torch.Generator().manual_seed(1)
    extra = {'sp': lambda: torch.randint(0, 30, (len(x), *x.shape[-2:]), generator=g)}
    return (x, *(extra[k]() for k in ARCHS[arch].inputs))


def _train_inputs(arch, x):
    "`_inputs`, plus the targets a panoptic model reads in training (one thing instance per image)."
    if 'panoptic' not in ARCHS[arch].tasks: return x
    mask = torch.zeros(len(x[0]), *x[0].shape[-2:], dtype=torch.long); mask[:, 8:40, 16:60] = 2
    inst = torch.zeros_like(mask); inst[:, 8:40, 16:60] = 1
    return (*x, mask, inst)


# every head on every semantic architecture; the panoptic model (slow on CPU) with CASENet's
CASES = [(a, h) for a in SEMANTIC for h in (('casenet',) if 'panoptic' in ARCHS[a].tasks else ('casenet', 'dds', 'bbcb'))]


@pytest.mark.parametrize('arch,head', CASES)
def test_eval_is_the_baseline(arch, head, tmp_path):
    torch.manual_seed(0)
    m = _build(arch, boundary_head=head)
    torch.manual_seed(0)
    base = _build(arch)
    x = _inputs(arch, torch.randn(2, 3, 64, 96))
    train_out = m.train()(*_train_inputs(arch, x))
    assert {'edge', 'edge_last'} <= set(train_out) or {'sbcb_edge', 'sbcb_edge_last'} <= set(train_out)
    assert set(train_out) - set(base.train()(*_train_inputs(arch, x))) == {k for k, v in m.spec.outputs.items() if k not in base.spec.outputs}
    m.eval(); base.eval()
    with torch.no_grad(): out, ref_out = m(*x), base(*x)
    assert set(out) == set(ref_out) == set(base.eval_outputs)
    assert n_params(m.plain()) == n_params(base.plain())
    assert n_params(m) - n_params(m.plain()) == n_params(m.train_heads['sbcb']) + sum(n_params(h) for k, h in base.train_heads.items())
    # the saved inference model is the plain one and loads into a model built without the head
    net, _ = load_model(save_model(m, tmp_path/'m.pth'), device='cpu')
    assert n_params(net) == n_params(base.plain())
    base.plain().load_state_dict(m.plain().state_dict())
    with torch.no_grad():  # each model's outputs once (not once per output key: Seamless' eval forward is seconds on CPU)
        b_out, m_out, n_out = base(*x), m(*x), net(*x)
        for k in out: torch.testing.assert_close(b_out[k], m_out[k]); torch.testing.assert_close(n_out[k], m_out[k])
    # the FLOPs of inference are the baseline's
    from boundaryseg.models.costs import model_costs
    assert model_costs(m, (64, 96), inputs=x)['flops'] == model_costs(base, (64, 96), inputs=x)['flops']


def test_sbcb_trains_with_its_terms(tmp_path):
    dls = seg_dataloaders('synthetic', tmp_path/'synth', size=(64, 128), bs=4, n_train=8, n_val=2, image_size=(64, 128), seed=0,
                          device='cpu', targets='auto')
    assert dls.target_names == ('mask', 'inst', 'void')
    learn = seg_learner(dls, 'deeplabv3plus', backbone='test_resnet', recipe='sbcb', boundary_head='casenet', width=16,
                        path=tmp_path/'run', checkpoint=None)
    assert learn.loss_func.weights == {'seg': 1., 'edge': 5., 'edge_last': 5.}
    assert learn.loss_func.fn('edge').radius == 2  # the recipe's loss_kw
    learn.fit(1)
    assert {'train_seg', 'train_edge', 'train_edge_last'} <= set(learn.recorder.metric_names)
    assert all(np.isfinite(v) for v in learn.recorder.values[-1][:2])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        seg_learner(tiny_dls(), arch='psp', backbone='test_resnet', boundary_head='casenet', n_classes=3, width=8, checkpoint=None)
    assert any("read the targets ['inst', 'void']" in str(x.message) for x in w)


def test_detector_evaluate_and_cli(tmp_path):
    root = tmp_path/'synth'
    # 8 training and 2 validation scenes (not the default 100 and 20): the checks are on the outputs' kinds and layout,
    # one PNG per class and validation image, whatever their number
    r = subprocess.run([str(EXE), 'train', '--root', root, '--data_opt', 'n_train=8', '--data_opt', 'n_val=2', '--arch', 'casenet',
                        '--backbone', 'test_resnet', '--epochs', '1', '--bs', '4',
                        '--size', '64,128', '--out', tmp_path/'run', '--seed', '0'], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                       env={'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    assert r.returncode == 0, r.stderr[-3000:]
    net, meta = load_model(tmp_path/'run'/'model.pth', device='cpu')
    assert net.eval_outputs == ('edge',) and meta['recipe'] == 'sbcb'
    ds = seg_dataloaders('synthetic', root, size=(64, 128), bs=1).valid.dataset.reader
    assert len(ds) == 2  # the folder's manifest keeps the sizes the training wrote
    env = {'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'}
    r = subprocess.run([str(EXE), 'eval', tmp_path/'run'/'model.pth', '--root', root, '--out', tmp_path/'ev', '--edge_protocol', 'cityscapes-raw'],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'MF-ODS' in r.stdout and 'mIoU' not in r.stdout
    s = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert 0 <= s['edge']['mf_ods'] <= 1 and s['edge']['protocol'] == 'cityscapes-raw'
    png = sorted((tmp_path/'ev'/'predictions'/'edge').glob('class_*/**/*.png'))  # eval --out writes predict's layout: the image's path under the root
    assert len(png) == len(ds) * 19 and Image.open(png[0]).mode == 'L'  # pyEdgeEval's layout: class_XXX/<name>.png, 8-bit
    r = subprocess.run([str(EXE), 'predict', tmp_path/'run'/'model.pth', ds.items[0]['img'], '--out', tmp_path/'p2'], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path, env={'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((tmp_path/'p2').rglob('class_*/*.png'))) == 19


def test_bad_input():
    with pytest.raises(ValueError, match=r'sides=\(1, 2, 3, 5\): the backbone has sides 1\.\.4 only \(no side 5\)'):
        seg_model('psp', 'convnext_atto', n_classes=5, width=8, boundary_head={'kind': 'casenet', 'sides': (1, 2, 3, 5)})
    from boundaryseg.boundary_losses import MultiLabelEdgeLoss
    with pytest.raises(ValueError, match='radius must be at least 1 pixel, got 0.5'): MultiLabelEdgeLoss(radius=0.5)
    m = torch.zeros(1, 8, 8, dtype=torch.long); m[0, :, 4:] = 7
    with pytest.raises(ValueError, match=r'values \[7\] are neither train ids 0\.\.4'): MultiLabelEdgeLoss()(torch.zeros(1, 5, 8, 8), m)


def test_edge_loss_clamp_is_visible():
    """Issue 19 (6): when the boundaries cover more than half of most images, the per-image positive weight clamps to
    1 and the class balance is off: the loss records the weights and the clamped share, and warns once."""
    from boundaryseg.boundary_losses import MultiLabelEdgeLoss
    from boundaryseg.data.boundaries import boundary_targets
    dense = ((torch.arange(16)[:, None] // 2 + torch.arange(32)[None] // 2) % 3).expand(4, 16, 32).clone()   # 2x2 blocks of 3 classes
    lf = MultiLabelEdgeLoss(radius=2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        lf(torch.zeros(4, 3, 16, 32), dense)
        lf(torch.zeros(4, 3, 16, 32), dense)
    assert lf.clamped == 1. and lf.pos_weight.tolist() == [1.] * 4
    w = [m for m in w if 'MultiLabelEdgeLoss' in str(m.message)]  # the loss's own warnings (other libraries may warn in a full run)
    assert len(w) == 1 and 'clamps to 1 on 100% of the batch' in str(w[0].message)
    sparse = torch.zeros(2, 64, 128, dtype=torch.long); sparse[:, :, 40:] = 1; sparse[1, 30:, :] = 2
    lf = MultiLabelEdgeLoss(radius=1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        lf(torch.zeros(2, 3, 64, 128), sparse)
    P = boundary_targets(sparse, 3, radius=1).flatten(1).sum(1).float()
    assert not [m for m in w if 'MultiLabelEdgeLoss' in str(m.message)] and lf.clamped == 0.
    torch.testing.assert_close(lf.pos_weight, (64 * 128 - P) / P)


def _sbcb_density():
    "experiments/sbcb_density.py as a module (its settings and measurements)."
    import importlib.util, sys
    sys.path.insert(0, str(ROOT / 'experiments'))
    spec = importlib.util.spec_from_file_location('sbcb_density', ROOT / 'experiments' / 'sbcb_density.py')
    sd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sd)
    return sd


def test_testbed_boundary_density(tmp_path):
    """Issue 19 (6): the rebuilt SBCB testbed has Cityscapes-like boundary density: no image's positive weight clamps
    and the median weight is several times 1 (Cityscapes-like crops: about 13), where the old testbed (64x128 crops,
    radius 2) clamped on most images."""
    sd = _sbcb_density()
    after, before = (sd.synthetic(sd.SETTINGS[k], tmp_path / k, batches=2) for k in ('after', 'before'))
    assert sd.SETTINGS['after']['radius'] == 1
    assert after['clamped'] == 0 and after['pos_weight_median'] > 5 and after['pos_per_pixel'] < 0.2, after
    assert before['clamped'] > 0.3 and before['pos_weight_median'] < 1.5, before
    ref = sd.cityscapes_like()
    assert ref['clamped'] == 0 and 10 < ref['pos_weight_median'] < 20, ref


def test_main_job_boundary_density(tmp_path):
    """The main job's boundary head trains a class-balanced loss: on its crops (256x512 scenes, the `main` recipe's
    128x256) at its recipe's radius no image's positive weight clamps to 1 and the median weight is several times 1,
    where SBCB's radius 2 clamps a fifth of them (median weight about 2)."""
    sd = _sbcb_density()
    from boundaryseg.recipes import get_recipe
    assert sd.SETTINGS['main_job']['radius'] == get_recipe('main').loss_kw['radius'] == 1
    now, r2 = (sd.synthetic(sd.SETTINGS[k], tmp_path / 'synthetic_256', batches=2) for k in ('main_job', 'main_job_radius2'))
    assert now['clamped'] == 0 and now['pos_weight_median'] > 3, now
    assert r2['clamped'] > 0.1 and r2['pos_weight_median'] < 2.5, r2
