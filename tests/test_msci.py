"""MSCI end to end: super-pixels provided, cached and carried through training (the second epoch runs no SLIC), every
parameter of the context intertwining trained, and the console script's train / eval (multi-scale at the paper's test
scales) / predict on a model that reads super-pixels."""
import json, os, subprocess
import pytest
from pathlib import Path
from unittest import mock
import numpy as np
import torch

from boundaryseg.data.block import seg_dataloaders
from boundaryseg.data.datasets import get_dataset
from boundaryseg.data import superpixels
from boundaryseg.data.superpixels import SuperpixelProvider, slic_superpixels
from boundaryseg.learner import seg_learner
from boundaryseg.inference import predict, model_inputs
from boundaryseg.core import normalize
from boundaryseg.models.zoo import seg_model
from boundaryseg.models.msci import MSCI_TEST_SCALES

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT / '.venv' / 'bin' / 'boundaryseg'
SYN = dict(n_train=4, n_val=2, image_size=(64, 128))


def synth(tmp):
    root = tmp / 'synth'
    get_dataset('synthetic', root, 'train', **SYN)
    return root


def test_second_epoch_runs_no_slic(tmp_path):
    "Two epochs of training: SLIC runs once per image (train and val), never in the second epoch."
    root, calls = synth(tmp_path), []
    real = superpixels.slic
    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    prov = SuperpixelProvider(tmp_path / 'cache')
    epochs = []
    with mock.patch.object(superpixels, 'slic', counting):
        dls = seg_dataloaders('synthetic', root, size=(64, 128), bs=2, seed=0, inputs=('sp',), providers={'sp': prov}, device='cpu', **SYN)
        learn = seg_learner(dls, 'msci', 'test_resnet', checkpoint=None, path=tmp_path / 'run', width=8, metrics=[])
        with learn.no_bar(), learn.no_logging():
            for _ in range(2):
                learn.fit(1)
                epochs.append(len(calls))
    assert epochs[0] == 6, epochs                   # 4 training + 2 validation images, once each
    assert epochs[1] == epochs[0], epochs           # the second epoch: all from the cache
    assert len(list((tmp_path / 'cache').glob('*.npz'))) == 6


def test_every_msci_parameter_gets_a_gradient():
    "Both chains of every level pair, the deconvolutions, the reductions and the classifier are all used."
    torch.manual_seed(0)
    m = seg_model('msci', 'test_resnet', n_classes=3, width=8).train()
    img = (np.random.default_rng(0).random((2, 64, 96, 3)) * 255).astype(np.uint8)
    sp = torch.from_numpy(np.stack([slic_superpixels(i, n_segments=60) for i in img]))
    out = m(normalize(img), sp)['seg']
    torch.nn.functional.cross_entropy(out, torch.randint(0, 3, (2, 64, 96))).backward()
    dead = [n for n, p in m.head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead


def test_multiscale_predict_reads_superpixels():
    "At the paper's test scales the model is given the one map, resized: probabilities, and no error about sizes."
    m = seg_model('msci', 'test_resnet', n_classes=3, width=8).eval()
    img = (np.random.default_rng(1).random((1, 50, 70, 3)) * 255).astype(np.uint8)
    p = predict(m, normalize(img), scales=MSCI_TEST_SCALES, extra=model_inputs(m, img))['seg']
    assert p.shape == (1, 3, 50, 70)
    torch.testing.assert_close(p.sum(1), torch.ones(1, 50, 70))


def run(*args, env=None):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=900, env=env)


def test_cli_train_eval_predict(tmp_path):
    root, out = synth(tmp_path), tmp_path / 'run'
    env = {**os.environ, 'BOUNDARYSEG_CACHE': str(tmp_path / 'cache')}
    r = run('train', '--root', root, '--arch', 'msci', '--backbone', 'test_resnet', '--width', '8', '--epochs', '1', '--size', '64,128',
            '--bs', '2', '--out', out, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((tmp_path / 'cache' / 'superpixels').glob('*.npz'))) == 6
    r = run('eval', out / 'model.pth', '--root', root, '--scales', ','.join(map(str, MSCI_TEST_SCALES)), '--out', tmp_path / 'eval', env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert s['n_images'] == 2 and 0 <= s['miou'] <= 1
    r = run('predict', out / 'model.pth', root / 'leftImg8bit' / 'val', '--recursive', '--out', tmp_path / 'pred', env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((tmp_path / 'pred' / 'trainIds').rglob('*.png'))) == 2


def _scene_batch(n=2, size=(128, 256)):
    from boundaryseg.data.synthetic import synthetic_scene
    scenes = [synthetic_scene(size, seed=100 + i) for i in range(n)]
    img = np.stack([s[0] for s in scenes])
    return normalize(img), torch.from_numpy(np.stack([slic_superpixels(i) for i in img]))


def test_default_gates_are_not_saturated_at_init():
    """Issue 19 (4): with Eq. 3-4 as the literal sums about half of the gate pre-activations start beyond |z| = 6 (most of the
    finest up-chain's); the default, scale-free aggregation starts with almost none, and the sums stay available."""
    from boundaryseg.models.msci import gate_stats
    x, sp = _scene_batch()
    sat = {}
    for kw in ({}, dict(region_reduce='sum', neighbour_reduce='sum')):
        torch.manual_seed(0)
        m = seg_model('msci', 'resnet18', n_classes=19, width=32, **kw).eval()
        st = gate_stats(m, x, sp)
        assert len(st) == 36
        sat[bool(kw)] = (np.mean([s['sat'] for s in st]), np.mean([s['sat'] for s in st if s['chain'] == 'up0']))
    assert sat[False][0] < 0.02 and sat[False][1] < 0.02, sat      # default (means)
    assert sat[True][0] > 0.25 and sat[True][1] > 0.5, sat          # literal sums


def test_no_superpixel_arm_aggregates_like_the_full_model():
    """Issue 19 (4): the 'no super-pixels' arm differs from the full model in the super-pixels only. On a constant feature
    map every region and every window sees the same feature, so with the same aggregation both contexts are equal
    (the confounded arms, sums against a window's means, differ by the region sizes)."""
    from boundaryseg.models.msci import ContextChain, region_context, window_context
    from boundaryseg.data.superpixels import RegionGraph
    torch.manual_seed(0)
    ch = ContextChain(3, 2)
    _, sp = _scene_batch(1, (64, 128))
    g = RegionGraph(sp, [(16, 32), (8, 16)], [4, 8])
    x = torch.ones(1, 3, 16, 32)
    inside = g.unpool(torch.ones(g.n, 1), 1) > 0           # target cells that lie in a region
    rc, wc = region_context(ch, g, x, 0, 1), window_context(ch, x, (8, 16))
    torch.testing.assert_close(rc * inside, wc * inside, atol=1e-5, rtol=1e-5)
    rs = region_context(ch, g, x, 0, 1, 'sum', 'sum')
    assert (rs - wc).abs().amax() > 1                        # the literal sums scale with the regions' sizes
    m_sp, m_no = (seg_model(a, 'test_resnet', n_classes=3, width=8) for a in ('msci', 'msci_no_sp'))
    assert (m_sp.head.region_reduce, m_sp.head.neighbour_reduce) == (m_no.head.region_reduce, m_no.head.neighbour_reduce) == ('mean', 'mean')


def test_ablation_budget_is_equal_compute():
    "Issue 19 (4): the FCN arm (output stride 8) costs more per step than the MSCI arms; at equal compute it gets fewer steps."
    import importlib.util
    spec = importlib.util.spec_from_file_location('msci_ablation', ROOT / 'experiments' / 'msci_ablation.py')
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    a = ab.argparse.Namespace(backbone='test_resnet', width=8, crop=(64, 128), reduce='mean')
    macs = {v: ab.arm_macs(v, a) for v in ('msci', 'msci_no_sp', 'msci_fcn')}
    assert macs['msci_fcn'] > macs['msci'], macs
    steps = ab.budget_steps(macs, 100)
    assert steps['msci'] == 100 and steps['msci_fcn'] < 100
    for v in macs: assert abs(steps[v] * macs[v] / (100 * macs['msci']) - 1) < 0.01   # equal compute, to the rounding of a step
    assert set(ab.budget_steps(macs, 100, 'steps').values()) == {100}
    assert ab.options('msci_no_sp', a)[1] == dict(region_reduce='mean', neighbour_reduce='mean')
    assert ab.options('msci_sum', a)[1] == dict(region_reduce='sum', neighbour_reduce='sum')


def test_ablation_resume_refuses_another_setting(tmp_path, monkeypatch, capsys):
    "A results file of another setting (here: other steps) is refused before any run; one of this setting resumes (its finished runs are skipped)."
    import importlib.util, json, sys
    spec = importlib.util.spec_from_file_location('msci_ablation', ROOT / 'experiments' / 'msci_ablation.py')
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    out = tmp_path / 'r.json'
    argv = ['msci_ablation.py', '--variants', 'msci', '--seeds', '0', '--steps', '3', '--backbone', 'test_resnet', '--width', '8',
            '--crop', '32', '64', '--image_size', '32', '64', '--work', str(tmp_path / 'w'), '--out', str(out)]
    monkeypatch.setattr(sys, 'argv', argv)
    ran = []
    monkeypatch.setattr(ab, 'run', lambda *args, **kw: ran.append(args) or dict(arch='msci', seed=0, miou=0.5, steps=3, train_cpu_s=1.))
    ab.main()                                                # fresh: runs the one arm (stubbed) and writes the file
    assert len(ran) == 1 and json.loads(out.read_text())['config']['steps'] == 3
    ab.main()                                                # same setting: the finished run is kept, nothing reruns
    assert len(ran) == 1
    monkeypatch.setattr(sys, 'argv', [x if x != '3' else '4' for x in argv])
    with pytest.raises(SystemExit, match='another setting'): ab.main()
    assert len(ran) == 1
