"""Shared test helpers: the one runner of the reference evaluators (tests/ref/*.py in .venv-ref), runs over
processes joined by gloo, and metric views fed as fastai feeds them. Test files import them: `from conftest import ref_run`."""
import json, os, socket, subprocess
from pathlib import Path
from types import SimpleNamespace
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
REF_PY = ROOT/'.venv-ref'/'bin'/'python'


def ref_run(script, # a file of tests/ref, run by .venv-ref's python
            payload, # what the script reads: written as JSON to <tmp>/<script>.in.json, passed as argv[1]
            tmp, # folder for the exchanged files (the test's tmp_path)
           ):
    "Run a reference script on `payload`; return the JSON it writes to argv[2] (<tmp>/<script>.out.json), or None if it writes none."
    if not REF_PY.exists():
        pytest.fail(f"reference environment missing: {REF_PY} (the cross-checks run the official evaluators in it: `make ref-env`)",
                    pytrace=False)
    stem = Path(script).stem
    inp, out = Path(tmp)/f'{stem}.in.json', Path(tmp)/f'{stem}.out.json'
    inp.write_text(json.dumps(payload))
    out.unlink(missing_ok=True)
    r = subprocess.run([str(REF_PY), str(ROOT/'tests'/'ref'/script), str(inp), str(out)], capture_output=True, text=True)
    if r.returncode: pytest.fail(f"tests/ref/{script} failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}", pytrace=False)
    return json.loads(out.read_text()) if out.exists() else None


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _gloo_main(rank, world, port, fn, args):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try: fn(rank, world, *args)
    finally: dist.destroy_process_group()


def run_gloo(fn, # fn(rank, world, *args), a module-level function (the processes are spawned)
             world, # number of processes
             *args, # passed on to fn (picklable)
            ):
    "Run `fn` in `world` CPU processes joined by a gloo process group on a free local port; wait for all of them."
    mp.spawn(_gloo_main, args=(world, _free_port(), fn, args), nprocs=world, join=True)


def feed_views(acc, # a metrics accumulator (`metrics.base.CountsMetrics`)
               key:str, # the model output entry its prediction sits in
               batches, # (pred, *targets) tuples
              ) -> list: # the views' values
    "Feed `batches` to every view of `acc` as fastai's Recorder does (reset all, then each view accumulates each batch)."
    views = list(acc)
    for v in views: v.reset()
    for pred, *yb in batches:
        learn = SimpleNamespace(pred={key: pred}, yb=tuple(yb), dl=None)
        for v in views: v.accumulate(learn)
    return [v.value for v in views]


# `pytest --slow` runs the tests marked slow (as `nbdev_test --flags slow` runs the notebooks' `#| slow` cells); without it they are skipped
def pytest_addoption(parser):
    parser.addoption('--slow', action='store_true', default=False, help='also run the tests marked slow')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: a long test, run with --slow')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--slow'): return
    skip = pytest.mark.skip(reason='slow: run with --slow')
    for it in items:
        if 'slow' in it.keywords: it.add_marker(skip)


@pytest.fixture(scope='module')
def cityscapes_root(tmp_path_factory):
    "A Cityscapes tree holding the real 256x128 fixture frame (frankfurt_000000_000294) in both train and val."
    import shutil
    from boundaryseg.core import fixtures_path
    fx, frame, root = fixtures_path()/'cityscapes', 'frankfurt_000000_000294', tmp_path_factory.mktemp('cs')
    for split in ('train', 'val'):
        for kind, files in (('leftImg8bit', ['leftImg8bit']), ('gtFine', ['gtFine_labelIds', 'gtFine_instanceIds'])):
            d = root/kind/split/'frankfurt'
            d.mkdir(parents=True)
            for f in files: shutil.copy(fx/kind/'val'/'frankfurt'/f'{frame}_{f}.png', d)
    return root
