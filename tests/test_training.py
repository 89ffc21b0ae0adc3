"""Exact resume after a hard kill: a training process SIGKILLed in the middle of its second epoch (or in the middle of
writing a checkpoint) and started again with `resume=True` ends with the same weights and log as a run that was never
interrupted.

The training script is this file itself (`python tests/test_training.py worker ...`), run in subprocesses."""
import argparse, os, signal, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch

PY = sys.executable
HERE = Path(__file__).resolve()


def worker(a):
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from boundaryseg.core import set_seed
    from boundaryseg.learner import seg_learner
    from boundaryseg.test_utils import RandSeg, TinyNet

    class Saboteur(Callback):
        "SIGKILL this process at epoch 1 (the second), iteration 2."
        def before_batch(self):
            if self.training and self.epoch == 1 and self.iter == 2: os.kill(os.getpid(), signal.SIGKILL)

    if a.mode == 'killsave':  # die in the middle of writing the second checkpoint
        real_save, calls = torch.save, []
        def dying_save(obj, f, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                f.write(b'PK\x03\x04' + bytes(4096))
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *args, **kwargs)
        torch.save = dying_save

    set_seed(0, deterministic=True)
    torch.set_num_threads(1)
    out = Path(a.out)
    kw = dict(recipe='fastfcn', lr=0.05, path=out, resume=a.mode == 'resume', cbs=Saboteur() if a.mode == 'kill' else None)
    if a.data == 'real':  # the library's own pipeline: synthetic scenes, seeded augmentation, worker processes, a timm model
        from boundaryseg.data.block import seg_dataloaders
        dls = seg_dataloaders('synthetic', root=out/'synthetic', size=(32, 64), bs=4, num_workers=a.workers, n_train=12, n_val=4,
                              image_size=(64, 128), seed=0, device='cpu')
        learn = seg_learner(dls, arch='fastfcn_encnet', backbone='test_resnet', ch=32, **kw)
    else:
        # random flips (Python's RNG), noise (torch's) and dropout (torch's, in the forward pass): every stream must be restored
        dls = DataLoaders.from_dsets(RandSeg(24, size=16, aug=True, noise=0.1), RandSeg(8, size=16, seed=1), bs=4, num_workers=a.workers, device='cpu')
        learn = seg_learner(dls, arch='fcn', model=TinyNet(norm='bn', drop=0.2), n_classes=3, **kw)
    learn.fit(3)
    torch.save({'weights': learn.model.state_dict(), 'values': learn.recorder.values}, out/'result.pt')


def _run(out, mode, data='aug', workers=0):
    cmd = [PY, str(HERE), 'worker', '--out', str(out), '--mode', mode, '--data', data, '--workers', str(workers)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=HERE.parents[1],
                       env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    return p


def _result(out): return torch.load(out/'result.pt', weights_only=False)


def _assert_same(a, b):
    for k, w in a['weights'].items(): torch.testing.assert_close(b['weights'][k], w, rtol=0, atol=1e-6, msg=f'weight {k}')
    np.testing.assert_allclose(np.array(b['values'], float), np.array(a['values'], float), rtol=0, atol=1e-6)


# (data, DataLoader workers): random tensors with Python/torch-RNG augmentation in the main process; the library's
# synthetic dataset with its seeded augmentation in two worker processes
CASES = [('aug', 0), ('real', 2)]

@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    res = {}
    for data, workers in CASES:
        out = tmp_path_factory.mktemp(f'full_{data}')
        p = _run(out, 'full', data, workers)
        assert p.returncode == 0, p.stderr[-3000:]
        res[data] = _result(out)
    return res


@pytest.mark.parametrize('data,workers', CASES)
def test_sigkill_mid_epoch_then_resume(tmp_path, uninterrupted, data, workers):
    p = _run(tmp_path, 'kill', data, workers)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-3000:])
    ck = torch.load(tmp_path/'models'/'last.pth', weights_only=True)
    assert ck['epoch'] == 1                                   # the end of the first epoch; the second was cut short
    p = _run(tmp_path, 'resume', data, workers)
    assert p.returncode == 0, p.stderr[-3000:]
    res = _result(tmp_path)
    _assert_same(uninterrupted[data], res)
    diff = max(float((res['weights'][k] - w).abs().max()) for k, w in uninterrupted[data]['weights'].items())
    print(f'{data} data, {workers} workers: max |weight difference| resumed vs uninterrupted: {diff:.3g}')
    log = (tmp_path/'history.csv').read_text().splitlines()
    assert [l.split(',')[0] for l in log] == ['epoch', '0', '1', '2']


def test_sigkill_while_writing_checkpoint(tmp_path, uninterrupted):
    "The process dies half-way through writing the second checkpoint: the first stays complete and the run resumes from it."
    p = _run(tmp_path, 'killsave')
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-3000:])
    models = tmp_path/'models'
    assert torch.load(models/'last.pth', weights_only=True)['epoch'] == 1
    assert [f.name for f in models.iterdir() if f.name.endswith('.tmp')], 'the partial write went to a temporary file'
    p = _run(tmp_path, 'resume')
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_same(uninterrupted['aug'], _result(tmp_path))


if __name__ == '__main__' and sys.argv[1:2] == ['worker']:
    ap = argparse.ArgumentParser()
    ap.add_argument('worker')
    ap.add_argument('--out', required=True)
    ap.add_argument('--mode', required=True, choices=['full', 'kill', 'resume', 'killsave'])
    ap.add_argument('--data', default='aug', choices=['aug', 'real'])
    ap.add_argument('--workers', type=int, default=0)
    worker(ap.parse_args())
