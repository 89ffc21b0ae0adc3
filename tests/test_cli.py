"""The `boundaryseg` console script, run as a user runs it (a subprocess): help texts, one-line errors with exit status 2
for bad input, and a tiny end-to-end main job whose model `eval` and `predict` then read back. The help, the unknown
command and the missing root run the installed script in a fresh interpreter (`run`); the other tests run it in a child
forked from this process (`frun`, conftest.cli_run: the same process boundary without importing torch again)."""
import json, re, subprocess
from pathlib import Path
import numpy as np
import pytest

from conftest import cli_run

from boundaryseg.core import load_ids, fixtures_path

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'
FX = fixtures_path()
FRAME = 'frankfurt_000000_000294'


def run(*args, cwd=None, timeout=900):
    assert EXE.exists(), f"console script missing: {EXE} (pip install -e .)"
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def frun(*args, cwd=None, timeout=900):
    "`run` in a forked child (conftest.cli_run)."
    return cli_run(*args, cwd=cwd, timeout=timeout)


def one_line_error(r, *contains):
    "Exit status 2, no traceback, exactly one stderr line `boundaryseg: error: ...` containing every string."
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('boundaryseg: error: '), r.stderr
    assert 'Traceback' not in r.stderr
    for c in contains: assert c in lines[0], (c, lines[0])
    return lines[0]


def test_help():
    r = run('--help')
    assert r.returncode == 0
    for cmd in ('train', 'eval', 'predict', 'main'): assert re.search(rf'^  {cmd} +\S', r.stdout, re.M), cmd
    r = run('train', '--help')
    assert r.returncode == 0
    for flag in ('--data', '--root', '--arch', '--backbone', '--size', '--bs', '--epochs', '--lr', '--out', '--resume', '--workers', '--seed',
                 '--opt', '--wd', '--head_lr_mult', '--class_weight', '--class_uniform', '--width', '--mixed_precision'):
        assert flag in r.stdout, flag
    for cmd in ('eval', 'predict', 'main'): assert run(cmd, '--help').returncode == 0


def test_no_command_and_unknown_command():
    r = run()
    assert r.returncode == 2 and 'usage: boundaryseg <command>' in r.stderr
    one_line_error(run('fit'), "unknown command 'fit'")


def test_missing_root(tmp_path):
    one_line_error(run('train', '--data', 'cityscapes', '--root', tmp_path/'nowhere', cwd=tmp_path), str(tmp_path/'nowhere'))
    one_line_error(run('train', '--data', 'cityscapes', cwd=tmp_path), '--root')


def test_unknown_arch_and_backbone(tmp_path):
    one_line_error(frun('train', '--arch', 'unet', cwd=tmp_path), "--arch", "'unet'")
    one_line_error(frun('main', '--backbone', 'resnet19', '--out', tmp_path/'r', cwd=tmp_path), "--backbone", "'resnet19'")
    assert not (tmp_path/'data').exists()  # refused before any dataset was generated


def test_wrong_layout(tmp_path):
    (tmp_path/'leftImg8bit'/'train').mkdir(parents=True)
    (tmp_path/'images').mkdir()
    one_line_error(frun('train', '--data', 'cityscapes', '--root', tmp_path, cwd=tmp_path), 'Cityscapes')
    one_line_error(frun('train', '--data', 'ade20k', '--root', tmp_path, cwd=tmp_path), str(tmp_path))


def test_crop_larger_than_images(cityscapes_root, tmp_path):
    one_line_error(frun('train', '--data', 'cityscapes', '--root', cityscapes_root, '--size', '512,512', '--out', tmp_path, cwd=tmp_path),
                   'larger than the images')


def test_bad_options(tmp_path):
    one_line_error(frun('train', '--size', 'big', cwd=tmp_path), '--size')
    one_line_error(frun('train', '--opt', 'adam', cwd=tmp_path), '--opt', "'adam'")
    one_line_error(frun('main', '--class_weight', 'inverse', '--out', tmp_path/'r', cwd=tmp_path), '--class_weight', "'inverse'")
    one_line_error(frun('train', '--mixed_precision', 'fp8', cwd=tmp_path), '--mixed_precision')
    one_line_error(frun('main', '--class_uniform', '1.5', '--out', tmp_path/'r', cwd=tmp_path), 'class_uniform is a probability')
    assert not (tmp_path/'data').exists()  # refused before any dataset was generated
    r = frun('train', '--epochs', 'many', cwd=tmp_path)
    assert r.returncode == 2 and "invalid int value: 'many'" in r.stderr and 'Traceback' not in r.stderr
    one_line_error(frun('predict', tmp_path/'none.pth', tmp_path, cwd=tmp_path), 'no images')
    (tmp_path/'a.png').write_bytes((FX/'cityscapes'/'leftImg8bit'/'val'/'frankfurt'/f'{FRAME}_leftImg8bit.png').read_bytes())
    one_line_error(frun('predict', tmp_path/'none.pth', tmp_path, cwd=tmp_path), 'none.pth')
    one_line_error(frun('predict', tmp_path/'none.pth', tmp_path, '--scales', '1,x', cwd=tmp_path), '--scales')


@pytest.fixture(scope='module')
def main_job(tmp_path_factory):
    "A tiny main job: 4 training and 2 validation images, one epoch at 64x128."
    d = tmp_path_factory.mktemp('main')
    r = frun('main', '--out', d/'report', '--root', d/'synth', '--epochs', 1, '--n_train', 4, '--n_val', 2, '--size', '64,128', '--bs', 2, cwd=d)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return d, r


def test_main_job_report(main_job):
    d, r = main_job
    m = re.search(r'^mIoU (\d\.\d+)$', r.stdout, re.M)
    assert m, r.stdout[-2000:]
    rep = d/'report'
    met = json.loads((rep/'metrics.json').read_text())
    assert abs(met['miou'] - float(m.group(1))) < 1e-4
    assert set(met['iou']) >= {'road', 'car', 'sky'} and set(met['bf']) == {'3px', '5px', '9px', '12px'}
    assert met['n_images'] == 2 and met['config']['epochs'] == 1
    for f in ('batch.png', 'boundaries.png', 'results.png', 'pred_boundaries.png', 'iou.png', 'loss.png', 'model.pth', 'pred_edges.png', 'edge_pr.png'):
        assert (rep/f).stat().st_size > 0, f
    # boundary-aware: trained with SBCB's CASENet head (training only), whose boundaries are scored too
    assert met['config']['boundary_head'] == 'casenet' and 0 <= met['edge']['mf_ods'] <= 1 and 'MF-ODS' in r.stdout
    for fmt in ('trainIds', 'labelIds', 'color'): assert len(list((rep/'predictions'/fmt).glob('*.png'))) == 2, fmt


def test_eval_and_predict_read_the_model(main_job, tmp_path):
    "`eval` on the same split reproduces the main job's scores; `predict` writes the same train ids."
    d, _ = main_job
    rep = d/'report'
    assert json.loads((rep/'metrics.json').read_text())['config']['flip'] is True  # the main job evaluates with the flip
    r = frun('eval', rep/'model.pth', '--data', 'synthetic', '--root', d/'synth', '--out', tmp_path/'ev', '--flip', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = json.loads((rep/'metrics.json').read_text()), json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert a['miou'] == b['miou'] and a['iou'] == b['iou'] and a['bf'] == b['bf']
    r = frun('predict', rep/'model.pth', d/'synth'/'leftImg8bit'/'val', '--recursive', '--out', tmp_path/'pr', '--flip', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    preds = sorted((tmp_path/'pr'/'trainIds').rglob('*.png'))
    assert len(preds) == 2
    for p in preds:
        ref = rep/'predictions'/'trainIds'/(p.name.replace('_leftImg8bit', ''))
        np.testing.assert_array_equal(load_ids(p), load_ids(ref))
    one_line_error(frun('eval', rep/'model.pth', '--data', 'voc', '--root', d/'synth', cwd=tmp_path))
