"""`torchrun --nproc_per_node 2 --no-python boundaryseg train ...` on CPU (gloo): the command line trains data-parallel,
rank 0 alone writes the history, checkpoints and model, the ranks' weights agree, and the result equals the Python route
(`ddp_ctx` + `seg_learner(...).to_ddp()`, this file's `worker`, also under torchrun), after a fit and after a resume.

Run from the command line the same way: `python tests/test_cli_torchrun.py worker --root R --out O --epochs N [--resume]`
under `python -m torch.distributed.run --standalone --nproc_per_node 2`."""
import argparse, os, shutil, subprocess, sys, time
from pathlib import Path
import pytest
import torch

PY = sys.executable
HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'
TORCHRUN = [PY, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']
FRAME = 'frankfurt_000000_000294'
TINY = ['--arch', 'fcn', '--backbone', 'test_resnet', '--size', '32,32', '--bs', '1', '--width', '8']


def worker(a):
    "The Python route: what the README shows for several processes, with the options the CLI run gets."
    from boundaryseg.core import set_seed
    from boundaryseg.data.block import seg_dataloaders
    from boundaryseg.learner import seg_learner
    from boundaryseg.distributed import ddp_ctx
    with ddp_ctx() as (rank, world, _):
        set_seed(0)
        dls = seg_dataloaders('cityscapes', a.root, size=(32, 32), bs=1, num_workers=0, seed=0, targets='auto')
        learn = seg_learner(dls, arch='fcn', backbone='test_resnet', width=8, path=Path(a.out), resume=a.resume).to_ddp(seed=0)
        learn.fit(a.epochs)
        torch.save({k: v.cpu() for k, v in learn.model.plain().state_dict().items()}, Path(a.out)/f'rank{rank}.pt')


def _run(cmd, **kw):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore', 'PYTHONPATH': str(ROOT)}
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=kw.get('cwd', ROOT))
    return p, time.time() - t0


@pytest.fixture(scope='module')
def cs(tmp_path_factory):
    "A Cityscapes tree with 4 training and 2 validation copies of the fixture frame (2 + 1 per process)."
    from boundaryseg.core import fixtures_path
    fx, root = fixtures_path()/'cityscapes', tmp_path_factory.mktemp('cs')
    for split, n in (('train', 4), ('val', 2)):
        for k in range(n):
            for kind, suffix in (('leftImg8bit', 'leftImg8bit'), ('gtFine', 'gtFine_labelIds'), ('gtFine', 'gtFine_instanceIds')):
                d = root/kind/split/'frankfurt'
                d.mkdir(parents=True, exist_ok=True)
                shutil.copy(fx/kind/'val'/'frankfurt'/f'{FRAME}_{suffix}.png', d/f'frankfurt_00000{k}_000294_{suffix}.png')
    return root


def _weights(p): return torch.load(p, weights_only=True)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=f'weight {k}')


@pytest.fixture(scope='module')
def runs(cs, tmp_path_factory):
    "The CLI and the Python route, 2 epochs each under torchrun with 2 processes, then both resumed to 3 epochs."
    d = tmp_path_factory.mktemp('tr')
    res = {}
    for step, epochs, resume in (('fit', 2, []), ('resume', 3, ['--resume'])):
        p, t = _run(TORCHRUN + ['--no-python', str(EXE), 'train', '--data', 'cityscapes', '--root', str(cs), *TINY, '--epochs', str(epochs),
                                '--out', str(d/'cli'), *resume])
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
        q, tq = _run(TORCHRUN + [str(HERE), 'worker', '--root', str(cs), '--out', str(d/'py'), '--epochs', str(epochs), *resume])
        assert q.returncode == 0, q.stdout[-2000:] + q.stderr[-4000:]
        print(f'{step}: torchrun boundaryseg train {t:.1f} s, Python route {tq:.1f} s')
        res[step] = dict(cli=_weights(d/'cli'/'model.pth')['state_dict'], rank0=_weights(d/'py'/'rank0.pt'), rank1=_weights(d/'py'/'rank1.pt'),
                         stdout=p.stdout, history=(d/'cli'/'history.csv').read_text(), ck=torch.load(d/'cli'/'models'/'last.pth', weights_only=True))
    return res


@pytest.mark.parametrize('step', ['fit', 'resume'])
def test_cli_equals_python_route(runs, step):
    r = runs[step]
    _same(r['rank0'], r['rank1'])  # the Python route's ranks agree
    _same(r['cli'], r['rank0'])    # the command line trained what the Python route trained
    assert '2 processes: weights agree' in r['stdout']


def test_rank0_writes(runs):
    "One writer: the history has each epoch once, the checkpoint holds both ranks' generators."
    assert [l.split(',')[0] for l in runs['fit']['history'].splitlines()] == ['epoch', '0', '1']
    assert [l.split(',')[0] for l in runs['resume']['history'].splitlines()] == ['epoch', '0', '1', '2']
    assert runs['resume']['ck']['epoch'] == 3 and len(runs['resume']['ck']['rng']) == 2
    assert not torch.equal(runs['fit']['cli']['head.conv_seg.weight'], runs['resume']['cli']['head.conv_seg.weight'])  # the resumed epoch trained


if __name__ == '__main__' and sys.argv[1:2] == ['worker']:
    ap = argparse.ArgumentParser()
    ap.add_argument('worker')
    ap.add_argument('--root', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--resume', action='store_true')
    worker(ap.parse_args())


def test_main_job_under_torchrun(tmp_path):
    "`torchrun ... boundaryseg main`: data made once (rank 0), trained data-parallel, ranks agree, one report; the run is then guarded."
    out, root = tmp_path/'report', tmp_path/'syn'
    cmd = ['--no-python', str(EXE), 'main', '--out', str(out), '--root', str(root), '--arch', 'fcn', '--backbone', 'test_resnet',
           '--pretrained', 'none', '--width', '8', '--size', '64,128', '--bs', '1', '--epochs', '1', '--n_train', '4', '--n_val', '2',
           '--thresholds', '5']
    p, t = _run(TORCHRUN + cmd)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    print(f'torchrun boundaryseg main: {t:.1f} s')
    assert '2 processes: weights agree' in p.stdout
    assert p.stdout.count('mIoU ') == 1  # one report, from rank 0
    assert (out/'metrics.json').is_file() and (out/'model.pth').is_file()
    q, _ = _run([str(EXE)] + cmd[2:])  # the same run again, without --resume / --overwrite: refused, nothing replaced
    assert q.returncode == 2 and '--overwrite' in q.stderr, q.stdout[-2000:] + q.stderr[-2000:]
