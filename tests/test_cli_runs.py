"""The command line as a researcher uses it (subprocesses of the console script) on the real Cityscapes fixture frame:
no run silently overwritten, one-line errors (exit 2) for every failure a user can cause, `--debug` for the traceback,
model files that carry their label spec, `eval --out` in `predict`'s layout, binary boundary models through `eval`,
`--duality 0` and `--grad_fusion` from the command line, each run in a child forked from this process (conftest.cli_run;
the installed script in a fresh interpreter is tests/test_cli.py's). Tiny models (timm's `test_resnet`, width 8, 32x32 crops)."""
import json, resource, shutil, subprocess
from pathlib import Path
import numpy as np
import pytest
import torch

from conftest import cli_run

from boundaryseg.core import fixtures_path, load_ids

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'
FX = fixtures_path()
FRAME = 'frankfurt_000000_000294'
TINY = ['--backbone', 'test_resnet', '--size', '32,32', '--bs', '1', '--width', '8']


def run(*args, cwd=None, limit_bytes=None, env=None):
    "The console script in a child forked from this process (conftest.cli_run: a process of its own, torch already imported)."
    return cli_run(*args, cwd=cwd, timeout=900, limit_bytes=limit_bytes, env=env)


def one_line_error(r, *contains):
    "Exit status 2, no traceback, exactly one stderr line `boundaryseg: error: ...` containing every string."
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith('boundaryseg: error: '), r.stderr[-3000:]
    for c in contains: assert c in lines[0], (c, lines[0])
    return lines[0]


@pytest.fixture(scope='module')
def cs(cityscapes_root):
    "The shared Cityscapes fixture tree (conftest.py)."
    return cityscapes_root


@pytest.fixture(scope='module')
def run1(cs, tmp_path_factory):
    "A finished 2-epoch FCN run on the frame."
    d = tmp_path_factory.mktemp('run1')
    r = run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'fcn', *TINY, '--epochs', 2, '--out', d/'run', cwd=d)
    assert r.returncode == 0, r.stderr[-3000:]
    return d/'run'


def copy_run(run1, tmp_path):
    shutil.copytree(run1, tmp_path/'run')
    return tmp_path/'run'


def test_existing_run_refused(cs, run1, tmp_path):
    "A second `train` into a run's folder is refused (it truncated history.csv and replaced last.pth) and changes nothing."
    before = {f: (run1/f).read_bytes() for f in ('history.csv', 'models/last.pth', 'model.pth')}
    one_line_error(run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'fcn', *TINY, '--epochs', 1, '--out', run1, cwd=tmp_path),
                   f'--out {run1} holds a run', '--resume continues it, --overwrite replaces it')
    assert {f: (run1/f).read_bytes() for f in before} == before


def test_resume_needs_a_checkpoint(cs, tmp_path):
    one_line_error(run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'fcn', *TINY, '--epochs', 1, '--out', tmp_path/'new',
                       '--resume', cwd=tmp_path), f"--resume: no checkpoint {tmp_path/'new'/'models'/'last.pth'}")
    assert not (tmp_path/'new'/'history.csv').exists()


def test_resume_with_another_model(cs, run1, tmp_path):
    "Resuming with another --arch names the run's and the command's option; a run without run.json, the checkpoint."
    out = copy_run(run1, tmp_path)
    one_line_error(run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'psp', *TINY, '--epochs', 3, '--out', out, '--resume', cwd=tmp_path),
                   'was trained with --arch fcn; this command asks --arch psp')
    (out/'run.json').unlink()  # a run of an older version: the weights tell
    one_line_error(run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'psp', *TINY, '--epochs', 3, '--out', out, '--resume', cwd=tmp_path),
                   f"--resume: {out/'models'/'last.pth'} holds another model's weights")


def test_overwrite_cleans_orphans(cs, run1, tmp_path):
    "--overwrite replaces the run; a temp file of an interrupted checkpoint write is removed at the next start."
    out = copy_run(run1, tmp_path)
    (out/'models'/'.last.pth.k3j2.tmp').write_bytes(b'\0' * 1000)
    r = run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'fcn', *TINY, '--epochs', 1, '--out', out, '--overwrite', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [l.split(',')[0] for l in (out/'history.csv').read_text().splitlines()] == ['epoch', '0']
    assert sorted(p.name for p in (out/'models').iterdir()) == ['last.pth']


def test_out_that_cannot_be_written(cs, tmp_path):
    (tmp_path/'afile').write_text('')
    one_line_error(run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'fcn', *TINY, '--epochs', 1, '--out', tmp_path/'afile'/'run', cwd=tmp_path),
                   f"--out {tmp_path/'afile'/'run'}: {tmp_path/'afile'} is a file, not a folder")
    one_line_error(run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'fcn', *TINY, '--epochs', 1, '--out', '/sys/boundaryseg_test/run', cwd=tmp_path),
                   '--out /sys/boundaryseg_test/run: cannot create the folder')


def test_full_disk(cs, tmp_path):
    "A checkpoint that does not fit (here: a 1 MB file-size limit, EFBIG; ENOSPC takes the same path) is one line naming it."
    out = tmp_path/'run'
    r = run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'fcn', *TINY, '--epochs', 1, '--out', out, cwd=tmp_path, limit_bytes=1 << 20)
    one_line_error(r, f"cannot write the checkpoint {out/'models'/'last.pth'}")
    assert not (out/'models'/'last.pth').exists() and not list((out/'models').glob('.*.tmp'))  # no partial file left


def test_nan_loss_and_debug(cs, tmp_path):
    "A diverged run is one line naming the epoch, iteration and terms; --debug shows the traceback."
    args = ['train', '--data', 'cityscapes', '--root', cs, '--arch', 'fcn', *TINY, '--epochs', 1, '--lr', '1e12']
    one_line_error(run(*args, '--out', tmp_path/'a', cwd=tmp_path), 'non-finite loss', 'at epoch 0')
    r = run(*args, '--out', tmp_path/'b', '--debug', cwd=tmp_path)
    assert r.returncode != 0 and 'Traceback' in r.stderr and 'NonFiniteLossError' in r.stderr


def test_model_file_carries_spec(run1, cs, tmp_path):
    "predict needs no --spec; a --spec that disagrees with the model is refused; only SRC's own images unless --recursive."
    ck = torch.load(run1/'model.pth', weights_only=True)
    assert ck['meta']['spec']['classes'][:2] == ['road', 'sidewalk'] and len(ck['meta']['spec']['native_ids']) == 19
    one_line_error(run('predict', run1/'model.pth', cs/'leftImg8bit'/'val', '--recursive', '--spec', 'ade20k', '--out', tmp_path/'p', cwd=tmp_path),
                   '--spec ade20k: 150 classes', 'cityscapes')
    one_line_error(run('predict', run1/'model.pth', cs/'leftImg8bit'/'val', '--out', tmp_path/'p', cwd=tmp_path), '--recursive')
    r = run('predict', run1/'model.pth', cs/'leftImg8bit'/'val', '--recursive', '--out', tmp_path/'p', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path/'p'/'labelIds'/'frankfurt'/f'{FRAME}_leftImg8bit.png').is_file()


def test_eval_out_is_predicts_layout(run1, cs, tmp_path):
    "eval --out writes every format of the model (labelIds too) at the images' paths, as predict does; iIoU is reported."
    r = run('eval', run1/'model.pth', '--data', 'cityscapes', '--root', cs, '--out', tmp_path/'ev', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'iIoU' in r.stdout
    m = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert 'miiou' in m and set(m['iiou']) <= {'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle'}
    r = run('predict', run1/'model.pth', cs, '--recursive', '--pattern', '*_leftImg8bit.png', '--out', tmp_path/'pr', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rel = Path('leftImg8bit')/'val'/'frankfurt'/f'{FRAME}_leftImg8bit.png'
    for fmt in ('trainIds', 'labelIds', 'color'):
        assert (tmp_path/'ev'/'predictions'/fmt/rel).read_bytes() == (tmp_path/'pr'/fmt/rel).read_bytes(), fmt


def test_binary_boundary_model_through_eval(cs, tmp_path):
    "SBCB's BBCB (one boundary channel) is scored against the union of the classes' boundaries."
    r = run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'bbcb', *TINY, '--epochs', 1, '--out', tmp_path/'bb', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run('eval', tmp_path/'bb'/'model.pth', '--data', 'cityscapes', '--root', cs, '--out', tmp_path/'ev', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    e = json.loads((tmp_path/'ev'/'metrics.json').read_text())['edge']
    assert list(e['ods_class']) == ['boundary'] and 0 <= e['mf_ods'] <= 1
    assert len(list((tmp_path/'ev'/'predictions'/'edge').iterdir())) == 1


def test_duality_and_grad_fusion_options(cs, tmp_path):
    "--duality 0 removes RPCNet's own duality term (no loss column); --grad_fusion 0 builds RPCNet without ∇M fusion."
    r = run('train', '--data', 'cityscapes', '--root', cs, '--arch', 'rpcnet', *TINY, '--epochs', 1, '--duality', 0, '--grad_fusion', 0,
            '--out', tmp_path/'r', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    head = (tmp_path/'r'/'history.csv').read_text().splitlines()[0].split(',')
    assert 'train_seg' in head and 'train_edge' in head and not any('duality' in h for h in head), head
    ck = torch.load(tmp_path/'r'/'model.pth', weights_only=True)
    assert ck['config']['grad_fusion'] is False and not any('fusion' in k for k in ck['state_dict']), ck['config']
