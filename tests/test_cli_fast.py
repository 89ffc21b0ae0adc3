"""The instant command line: `--help`, every command's `--help` and every refused option run without importing torch,
timm or fastai (what made them take 10 s), and the torch-free copy of the registries' names equals the registries.
Speed itself is measured, not asserted (bench/bench_cli.py): what is checked here is the cause, the modules imported."""
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ('torch', 'timm', 'fastai', 'cv2', 'skimage', 'scipy', 'matplotlib')

PROBE = """
import sys, json, contextlib, io
from boundaryseg.cli.app import main
o, e = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
    try: code = main(json.loads(sys.argv[1]))
    except SystemExit as x: code = x.code
print(json.dumps(dict(code=code, out=o.getvalue(), err=e.getvalue(), heavy=[m for m in %r if m in sys.modules])))
""" % (HEAVY,)


def probe(*argv):
    r = subprocess.run([sys.executable, '-c', PROBE, json.dumps(list(argv))], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('argv, code, text', [
    (['--help'], 0, 'commands:'),
    (['train', '--help'], 0, 'architectures (--arch):'),
    (['eval', '--help'], 0, '--edge_protocol'),
    (['predict', '--help'], 0, '--recursive'),
    (['main', '--help'], 0, 'recipes (--recipe):'),
    (['train', '--arch', 'nope'], 2, "--arch: unknown arch 'nope'"),
    (['train', '--epochs', '0'], 2, '--epochs must be >= 1; got 0'),
    (['train', '--epochs', '-1'], 2, '--epochs must be >= 1; got -1'),
    (['train', '--bs', '0'], 2, '--bs must be >= 1; got 0'),
    (['train', '--momentum', '2'], 2, '--momentum must be in [0, 1); got 2.0'),
    (['train', '--lr', '-0.1'], 2, '--lr must be > 0; got -0.1'),
    (['main', '--n_train', '0'], 2, '--n_train must be >= 1'),
    (['train', '--data', 'kitti'], 2, "--data: unknown data 'kitti'"),
    (['train', '--size', 'big'], 2, '--size: expected H,W'),
    (['train', '--data_opt', 'classes'], 2, '--data_opt: expected key=value'),
    (['eval', 'm.pth', '--scales', '1,x'], 2, '--scales'),
    (['train', '--epochs', 'many'], 2, "invalid int value: 'many'"),
    (['fit'], 2, "unknown command 'fit'"),
])
def test_without_torch(argv, code, text):
    "Help and refused options: the answer, and no heavy module imported on the way."
    r = probe(*argv)
    assert r['code'] == code, r
    assert text in r['out'] + r['err'], (text, r['out'][-500:], r['err'][-500:])
    if code == 2 and 'invalid int' not in text: assert r['err'].count('\n') == 1 and r['err'].startswith('boundaryseg: error: '), r['err']
    assert r['heavy'] == [], f"{argv} imported {r['heavy']}"


def test_registry_names_equal_registries():
    "The copy that --help lists (cli.options.REGISTRY_NAMES) equals the registries, read in a fresh process."
    code = ("import json; from boundaryseg.cli.options import registry_names, REGISTRY_NAMES\n"
            "live = registry_names(live=True)\n"
            "print(json.dumps({k: [live[k] == REGISTRY_NAMES[k], str(live[k])[:3000]] for k in REGISTRY_NAMES}))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    bad = {k: v[1] for k, v in res.items() if not v[0]}
    assert not bad, f"cli.options.REGISTRY_NAMES is out of date; the registries hold: {bad}"


def test_help_lists_every_registered_name():
    out = probe('train', '--help')['out']
    from boundaryseg.cli.options import REGISTRY_NAMES
    for a in REGISTRY_NAMES['archs']: assert f'\n  {a} ' in out, a
    for ds in REGISTRY_NAMES['datasets']: assert ds in out, ds


def test_plugin_reads_the_live_registries(tmp_path):
    "A plugin's architecture is listed and accepted: with a plugin loaded, the names come from the registries themselves."
    (tmp_path/'plug.py').write_text("from boundaryseg.models.zoo import ARCHS\nimport dataclasses\n"
                                   "ARCHS['plugged_fcn'] = dataclasses.replace(ARCHS['fcn'], name='plugged_fcn', doc='a plugged FCN')\n")
    r = probe('train', '--help', '--plugin', str(tmp_path/'plug.py'))
    assert r['code'] == 0 and '\n  plugged_fcn ' in r['out'], r['out'][-3000:]
    r = probe('train', '--arch', 'plugged_fcn', '--epochs', '0', '--plugin', str(tmp_path/'plug.py'))
    assert r['code'] == 2 and '--epochs must be >= 1' in r['err'], r
