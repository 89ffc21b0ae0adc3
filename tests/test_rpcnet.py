"""RPCNet end to end: Test-NMS equal to pyEdgeEval's fast_nms on the Cityscapes fixture's boundary probabilities (every
pixel, 8-bit and float, a batch of two frames), RPCNet training through seg_learner with its three loss terms, saved and
reloaded, predicted with sliding windows + flip; the duality loss on another architecture; the command line (train,
eval with and without --nms)."""
import json, subprocess
from pathlib import Path
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from boundaryseg.core import load_ids, fixtures_path, set_seed
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.data.boundaries import eval_boundaries
from boundaryseg.data.block import seg_dataloaders
from boundaryseg.data.datasets import get_dataset
from boundaryseg.data.transforms import resize_nearest
from boundaryseg.metrics.nms import edge_nms
from boundaryseg.models.zoo import seg_model
from boundaryseg.rpcnet_losses import add_duality
from boundaryseg.learner import seg_learner
from boundaryseg.inference import save_model, load_model, predict
from conftest import ref_run

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'
PRED = fixtures_path()/'cityscapes_fullres_predictions'/'frankfurt'


def fixture_boundaries(frame, size=(512, 1024), seed=0):
    "Boundary probabilities (19,H,W) from the real HRNet+OCR prediction of a fixture frame: class boundaries, blurred, damped."
    lab = CITYSCAPES.encode(load_ids(PRED/f'{frame}_pred_labelIds.png'))
    b = eval_boundaries(lab, 19, 'raw', scale=1.0).astype(np.float64)
    soft = gaussian_filter(b, (0, 1.5, 1.5))
    soft = np.clip(soft / soft.max() * np.random.default_rng(seed).uniform(0.6, 1.0, soft.shape), 0, 1)
    return resize_nearest(torch.from_numpy(soft), size).numpy()  # the evaluation resolution, as the evaluators resize PNGs


@pytest.mark.parametrize('kind', ['8-bit', 'float'])
def test_nms_equals_pyedgeeval_on_cityscapes(tmp_path, kind):
    "Every pixel of a batch (2 frames x 19 classes) equal to fast_nms: 8-bit maps (mostly zero) and float maps (no zero)."
    x = np.stack([fixture_boundaries(f, (256, 512), i) for i, f in enumerate(('frankfurt_000000_000294', 'frankfurt_000000_002196'))])
    x = np.round(x * 255) / 255 if kind == '8-bit' else np.clip(x, 1e-4, 1)
    assert ((x == 0).mean() > 0.5) == (kind == '8-bit')
    np.save(tmp_path/'x.npy', x.reshape(-1, *x.shape[-2:]))
    ref_run('ref_pyedgeeval.py', dict(op='nms', x=str(tmp_path/'x.npy'), out=str(tmp_path/'y.npy')), tmp_path)
    ref = np.load(tmp_path/'y.npy').reshape(x.shape)
    np.testing.assert_array_equal(edge_nms(x), ref)
    np.testing.assert_array_equal(edge_nms(torch.from_numpy(x)).numpy(), ref)  # tensors too
    np.testing.assert_array_equal(edge_nms(x, tile=16), ref)                    # other tilings


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    get_dataset('synthetic', root, 'train', n_train=8, n_val=4, image_size=(64, 128))
    return root


def tiny_dls(root, bs=2):
    return seg_dataloaders('synthetic', root, size=(64, 128), bs=bs, seed=0, targets=('mask', 'inst', 'void'), scale=(1.0, 1.25), device='cpu')


def test_rpcnet_trains_saves_and_predicts(synth_root, tmp_path):
    torch.set_num_threads(1)
    set_seed(0)
    dls = tiny_dls(synth_root)
    learn = seg_learner(dls, 'rpcnet', 'resnet18', width=8, steps=2, opt='adamw', lr=2e-3, checkpoint=None, path=tmp_path, metrics=[])
    assert learn.loss_func.weights == {'seg': 1., 'duality': 1., 'edge': 1000.}
    assert learn.recipe.name == 'rpcnet' and learn.recipe.lr == 2e-3
    before = learn.validate()[0]
    with learn.no_bar(): learn.fit(2)
    assert learn.validate()[0] < before
    assert set(learn.loss_func.last) == {'seg', 'duality', 'edge'}
    p = save_model(learn.model, tmp_path/'m.pth')
    net, _ = load_model(p, device='cpu')
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        a, b = learn.model.eval()(x), net(x)
    for k in ('seg', 'edge'): torch.testing.assert_close(a[k], b[k])
    pr = predict(net, x, flip=True, crop=(48, 96), stride=(32, 64))  # the paper's sliding windows + flip
    assert set(pr) == {'seg', 'edge'} and pr['edge'].shape == (1, 19, 64, 128)
    torch.testing.assert_close(pr['seg'].sum(1), torch.ones(1, 64, 128))


def test_duality_on_another_architecture(synth_root, tmp_path):
    "FastFCN-PSP with the duality loss: the term is trained and logged; the model is FastFCN's."
    torch.set_num_threads(1)
    set_seed(0)
    m = add_duality(seg_model('fastfcn_psp', 'resnet18', n_classes=19, width=8, aux=False), 1.)
    learn = seg_learner(tiny_dls(synth_root), model=m, checkpoint=None, path=tmp_path, metrics=[])
    assert 'duality' in learn.loss_func.names and learn.loss_func.keys['duality'] == ('seg',)
    with learn.no_bar(): learn.fit(1)
    assert learn.loss_func.last['duality'] > 0
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in seg_model('fastfcn_psp', 'resnet18', n_classes=19, width=8, aux=False).parameters())


def test_cli_train_and_eval_with_nms(synth_root, tmp_path):
    run = lambda *a: subprocess.run([str(EXE), *map(str, a)], capture_output=True, text=True, timeout=1800)
    r = run('train', '--arch', 'rpcnet', '--root', synth_root, '--size', '64,128', '--bs', '2', '--epochs', '1', '--width', '8',
            '--opt', 'adamw', '--lr', '0.002', '--out', tmp_path/'run')
    assert r.returncode == 0, r.stderr[-3000:]
    scores = {}
    for nms in (False, True):
        out = tmp_path/('nms' if nms else 'plain')
        r = run('eval', tmp_path/'run'/'model.pth', '--root', synth_root, '--edge_protocol', 'sbd-raw', '--flip', '--out', out,
                *(['--nms'] if nms else []))
        assert r.returncode == 0, r.stderr[-3000:]
        scores[nms] = json.loads((out/'metrics.json').read_text())
        assert 'MF-ODS' in r.stdout
    assert scores[True]['edge']['protocol'] == 'sbd-raw+nms' and scores[False]['edge']['protocol'] == 'sbd-raw'
    assert scores[True]['miou'] == scores[False]['miou']  # NMS touches the boundaries only
    assert scores[True]['edge']['mf_ods'] != scores[False]['edge']['mf_ods']
