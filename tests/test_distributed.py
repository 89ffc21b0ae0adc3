"""Distributed data-parallel training on CPU (gloo) under torchrun: two processes train exactly like one process with the
same global batch, and a dead or stuck rank ends the job within the process-group timeout instead of hanging.

The training script is this file itself (`python tests/test_distributed.py worker ...`), launched either plainly (one
process, no process group) or with `python -m torch.distributed.run --standalone --nproc_per_node 2`."""
import argparse, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch

PY = sys.executable
HERE = Path(__file__).resolve()


def worker(a):
    "Train TinyNet on 16 images (7 validation images: uneven shards 3 + 4) and save the result from rank 0."
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from boundaryseg.core import set_seed
    from boundaryseg.learner import seg_learner
    from boundaryseg.test_utils import RandSeg, TinyNet
    from boundaryseg.distributed import ddp_ctx

    class Saboteur(Callback):
        "Rank 1 dies (SIGKILL) or hangs at the third batch."
        def before_batch(self):
            if self.training and self.iter == 2 and rank == 1:
                if a.mode == 'kill': os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out = Path(a.out)
    with ddp_ctx(timeout=a.timeout) as (rank, world, _):
        set_seed(0)
        # GroupNorm (no batch statistics, so the per-rank batches do not change the result) and a training-only aux head
        dls = DataLoaders.from_dsets(RandSeg(16, size=16), RandSeg(7, size=16, seed=1), bs=a.bs, num_workers=0, device='cpu')
        learn = seg_learner(dls, arch='fcn', model=TinyNet(), n_classes=3, recipe='fastfcn', lr=0.05, path=out/'run',
                            cbs=Saboteur() if a.mode != 'fit' else None).to_ddp(seed=11)
        learn.fit(a.epochs)
        if rank == 0:
            torch.save({'weights': learn.model.state_dict(), 'values': learn.recorder.values,
                        'names': list(learn.recorder.metric_names), 'world': world}, out/'result.pt')


def _run(out, nproc, bs, mode='fit', epochs=2, timeout=60., limit=240):
    cmd = [PY, str(HERE), 'worker', '--out', str(out), '--bs', str(bs), '--mode', mode, '--epochs', str(epochs), '--timeout', str(timeout)]
    if nproc > 1: cmd = [PY, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc)] + cmd[1:]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env, cwd=HERE.parents[1])
    return p, time.time() - t0


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "One process with batch 4, and two gloo processes with batch 2 each: the same global batches."
    res = {}
    for nproc, bs in [(1, 4), (2, 2)]:
        out = tmp_path_factory.mktemp(f'p{nproc}')
        p, _ = _run(out, nproc, bs)
        assert p.returncode == 0, p.stderr[-3000:]
        res[nproc] = torch.load(out/'result.pt', weights_only=False) | {'out': out}
    return res


def test_two_processes_train_like_one(runs):
    one, two = runs[1], runs[2]
    assert (one['world'], two['world']) == (1, 2)
    assert one['names'] == two['names']
    for k, w in one['weights'].items():
        torch.testing.assert_close(two['weights'][k], w, rtol=0, atol=1e-5, msg=f'weight {k}')
    print('max |weight difference|:', max(float((two['weights'][k] - w).abs().max()) for k, w in one['weights'].items()))
    v1, v2 = np.array(one['values'], dtype=float), np.array(two['values'], dtype=float)
    print('max |difference| per column:', dict(zip(one['names'][1:], np.abs(v1 - v2).max(0).round(9))))
    # train/valid loss, mIoU, accuracy and the loss terms of every epoch (nan: the aux head does not run in validation)
    np.testing.assert_allclose(v2, v1, rtol=0, atol=1e-5)
    # training changed the weights: the comparison is not between two untouched initialisations
    assert v1[-1, one['names'].index('valid_loss') - 1] < v1[0, one['names'].index('valid_loss') - 1]


def test_rank0_writes_log_and_checkpoint(runs):
    run = runs[2]['out']/'run'
    log = (run/'history.csv').read_text().splitlines()
    assert [l.split(',')[0] for l in log] == ['epoch', '0', '1']   # one writer: no interleaved or doubled rows
    ck = torch.load(run/'models'/'last.pth', weights_only=True)
    assert ck['epoch'] == 2 and len(ck['rng']) == 2                # both ranks' generators, gathered to rank 0
    assert ck['cbs']['ddp']['seed'] == 11


@pytest.mark.parametrize('mode', ['kill', 'hang'])
def test_dead_rank_ends_job(tmp_path, mode):
    "Rank 1 is SIGKILLed, or hangs, mid-epoch: rank 0 fails within the 5 s timeout and torchrun stops the job."
    p, took = _run(tmp_path, 2, 2, mode=mode, timeout=5., limit=300)
    print(f'{mode}: job ended after {took:.1f} s with exit code {p.returncode}')
    assert p.returncode != 0
    assert not (tmp_path/'result.pt').exists()
    assert took < 120, f'the job took {took:.0f} s: a hang, not the 5 s timeout'
    if mode == 'hang': assert 'Timed out' in p.stderr or 'timeout' in p.stderr.lower(), p.stderr[-3000:]


if __name__ == '__main__' and sys.argv[1:2] == ['worker']:
    ap = argparse.ArgumentParser()
    ap.add_argument('worker')
    ap.add_argument('--out', required=True)
    ap.add_argument('--bs', type=int, default=4)
    ap.add_argument('--mode', default='fit', choices=['fit', 'kill', 'hang'])
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--timeout', type=float, default=60.)
    worker(ap.parse_args())
