"""Shared test helpers: the one runner of the reference evaluators (tests/ref/*.py in .venv-ref), runs over
processes joined by gloo, metric views fed as fastai feeds them, and the console script run in a forked child
(`cli_run`). Test files import them: `from conftest import ref_run`."""
import io, json, os, resource, socket, subprocess, sys, tempfile, time, traceback, warnings
from pathlib import Path
from types import SimpleNamespace
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
REF_PY = ROOT/'.venv-ref'/'bin'/'python'
EXE = ROOT/'.venv'/'bin'/'boundaryseg'


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


def _fresh_warnings():
    "The warning filters and printer of a fresh interpreter (pytest records warnings instead of printing them to stderr)."
    warnings.resetwarnings()  # also invalidates the modules' 'once' registries
    for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning): warnings.filterwarnings('ignore', category=cat)
    warnings.filterwarnings('default', category=DeprecationWarning, module='__main__')
    warnings.showwarning = warnings._showwarning_orig


def cli_run(*args, # the console script's arguments (str() of each)
            cwd=None, # working directory of the run (default: this process's)
            env=None, # its whole environment (default: this process's)
            timeout=900, # seconds, then the run is killed and subprocess.TimeoutExpired raised
            limit_bytes=None, # RLIMIT_FSIZE of the run (a disk that fills up)
           ) -> subprocess.CompletedProcess:
    """`boundaryseg ARGS` as the console script runs it (`sys.exit(main())`), in a child forked from this test process: a
    process of its own (exit status, stdout and stderr captured, cwd, environment, resource limits, fresh warning
    filters), without importing torch, timm and fastai again (about 6 s of CPU per run). What only a fresh interpreter
    shows — the installed script, the commands' lazy imports, import-time warnings on stderr, the static registry names —
    the real subprocesses test: tests/test_cli.py::test_help, ::test_no_command_and_unknown_command, ::test_missing_root,
    tests/test_cli_fast.py and the end-to-end runs of test_sbcb, test_registry, test_msci, test_rpcnet, test_panoptic,
    test_main_job and test_cli_torchrun. Not for runs that depend on process-wide state the library resolves once and
    this process may already hold (e.g. the `sp` provider's cache folder from $BOUNDARYSEG_CACHE: test_msci's CLI test
    stays a real subprocess). Falls back to a real subprocess where forking is unsafe (more than one
    torch/OpenMP thread in this process) or unavailable."""
    args = [str(a) for a in args]
    import torch
    if not hasattr(os, 'fork') or torch.get_num_threads() != 1 or os.environ.get('BOUNDARYSEG_TEST_NO_FORK'):
        pre = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))) if limit_bytes else None
        return subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, preexec_fn=pre)
    from boundaryseg.cli.app import main, COMMANDS, command
    for c in COMMANDS: command(c)  # import every command's module here once, not in each child
    with tempfile.TemporaryDirectory() as td:
        paths = [os.path.join(td, 'stdout'), os.path.join(td, 'stderr')]
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                for fd, p in zip((1, 2), paths):
                    f = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600); os.dup2(f, fd); os.close(f)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, 'w', closefd=False), line_buffering=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, 'w', closefd=False), write_through=True)
                sys.stdin = open(os.devnull)
                if limit_bytes: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
                if cwd is not None: os.chdir(cwd)
                if env is not None: os.environ.clear(); os.environ.update(env)
                _fresh_warnings()
                sys.argv = [str(EXE), *args]
                code = main(args)
            except SystemExit as e:  # argparse's usage errors; as the interpreter exits on them
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if isinstance(e.code, str): print(e.code, file=sys.stderr)
            except BaseException:  # what the interpreter does with an uncaught exception
                traceback.print_exc(); code = 1
            finally:
                try: sys.stdout.flush(); sys.stderr.flush()
                finally: os._exit(code if isinstance(code, int) else 1)
        t0 = time.monotonic()
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done: break
            if time.monotonic() - t0 > timeout:
                os.kill(pid, 9); os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired([str(EXE), *args], timeout)
            time.sleep(0.05)
        out, err = (Path(p).read_text(errors='replace') for p in paths)
    return subprocess.CompletedProcess([str(EXE), *args], os.waitstatus_to_exitcode(status), out, err)


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
