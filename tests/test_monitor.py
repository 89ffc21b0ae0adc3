"""The loss-balance monitor (`boundaryseg.monitor.LossBalance`) on real architectures: every loss term of RPCNet, SBCB,
DDS, EncNet, MSCI and Seamless (nested detection outputs, terms that sample) gets a measurement; a fit with the monitor at
every step ends with the same weights as without it; a killed and resumed fit continues its rows."""
import math, warnings
import pytest
import torch
from fastai.callback.core import Callback, CancelFitException

from boundaryseg.core import set_seed
from boundaryseg.data.block import seg_dataloaders
from boundaryseg.learner import seg_learner
from boundaryseg.monitor import LossBalance
from boundaryseg.test_utils import tiny_learner
from boundaryseg.models.registry import arch_spec

CASES = {  # name -> (arch, seg_model options)
    'rpcnet': ('rpcnet', {}),
    'sbcb': ('deeplabv3plus', {'boundary_head': 'casenet'}),
    'dds': ('dds', {}),
    'encnet': ('encnet', {}),
    'msci': ('msci', {}),
    'seamless': ('seamless', {}),
}


def _learner(tmp, arch, kw, monitor, n_train=2):
    set_seed(0)
    inputs = arch_spec(arch).inputs
    dls = seg_dataloaders('synthetic', tmp/'synthetic', size=(64, 128), bs=2, n_train=n_train, n_val=2, image_size=(64, 128), seed=0,
                          targets=('mask', 'inst', 'void'), inputs=inputs, device='cpu')
    return seg_learner(dls, arch, backbone='test_resnet', path=tmp/'run', checkpoint=None, metrics=[], width=16, recipe='main',
                       class_weight=None, mixed_precision=False, monitor=monitor, **kw)


class LastTerms(Callback):
    "The training step's term values as the loss recorded them."
    def after_loss(self):
        if self.training: self.last = {k: v.clone() for k, v in self.learn.loss_func.last.items()}


@pytest.mark.parametrize('case', list(CASES))
def test_every_term_measured(tmp_path, case):
    arch, kw = CASES[case]
    learn = _learner(tmp_path, arch, kw, monitor=1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=(seen := LastTerms()))
    rows = learn.loss_balance.rows
    terms = list(learn.loss_func.weights)
    assert [r['term'] for r in rows] == terms  # one step, one row per term, in the loss's order
    main = rows[0]
    assert main['share'] == 1 and main['cos'] == pytest.approx(1) and main['g_bb'] > 0
    for r in rows:
        assert math.isfinite(r['weighted']) and r['weighted'] == pytest.approx(r['weight'] * r['value'])
        assert r['value'] == pytest.approx(float(seen.last[r['term']]), rel=1e-5)  # what the loss itself recorded in that step
        assert math.isfinite(r['g_out']) and math.isfinite(r['share']) and r['stage'] < 0
    assert (tmp_path/'run'/'loss_balance.csv').exists()


def test_seamless_trajectory_unchanged(tmp_path):
    "Seamless samples anchors and proposals: with the monitor at every step the weights are those of the fit without it."
    def weights(monitor):
        learn = _learner(tmp_path/str(monitor), 'seamless', {}, monitor=monitor, n_train=4)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with learn.no_bar(), learn.no_logging(): learn.fit(1)
        return learn.model.state_dict()
    a, b = weights(None), weights(1)
    for k in a: assert torch.equal(a[k], b[k]), k


class StopAfter(Callback):
    order = 99
    def __init__(self, n): self.n = n
    def after_epoch(self):
        if self.epoch == self.n: raise CancelFitException


def test_resume_continues_rows(tmp_path):
    "A fit stopped after its second epoch and resumed from the checkpoint has the rows and history of the uninterrupted fit."
    full = tiny_learner(tmp_path/'a', metrics=[], monitor=3)
    full.fit(3)
    part = tiny_learner(tmp_path/'b', metrics=[], monitor=3)
    part.fit(3, cbs=StopAfter(1))
    resumed = tiny_learner(tmp_path/'b', metrics=[], monitor=3, resume=True)
    resumed.fit(3)
    key = lambda rs: [(r['iter'], r['term'], round(r['share'], 5)) for r in rs]
    assert key(resumed.loss_balance.rows) == key(full.loss_balance.rows)
    assert sorted({r['iter'] for r in full.loss_balance.rows}) == [0, 3, 6, 9]
    h = lambda p: (p/'history.csv').read_text().splitlines()[0]
    assert h(tmp_path/'a') == h(tmp_path/'b') and 'share_aux' in h(tmp_path/'a')


def test_train_command_draws_the_figure(tmp_path):
    "`boundaryseg train` writes the monitor's rows (loss_balance.csv) and its figure (loss_balance.png) next to history.csv."
    from boundaryseg.data.synthetic import make_synthetic_cityscapes
    from boundaryseg.cli.train import train_cmd
    root = make_synthetic_cityscapes(tmp_path/'synth', n_train=4, n_val=2, size=(64, 128))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        train_cmd(root=str(root), arch='deeplabv3plus', backbone='test_resnet', size='64,128', bs=2, epochs=1, out=str(tmp_path/'run'),
                  boundary_head='casenet', width=16)
    run = tmp_path/'run'
    assert (run/'loss_balance.png').stat().st_size > 0
    assert (run/'loss_balance.csv').read_text().splitlines()[0].startswith('iter,epoch,term')
    assert 'share_edge' in (run/'history.csv').read_text().splitlines()[0]
