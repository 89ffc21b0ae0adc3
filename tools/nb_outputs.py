#!/usr/bin/env python
"""Execute notebooks and commit only the outputs that show a figure or a table; every other output is cleared.

The docs (Quarto, GitHub) show each notebook as committed, so, as in fastai, figures and tables are kept as outputs:
outputs with image/png or image/svg+xml, and displayed tables (text/html with a <table>, text/markdown with a pipe
table, e.g. a pandas DataFrame or IPython.display.Markdown). Text, streams, warnings, reprs and errors are dropped.

    python tools/nb_outputs.py                         # every notebook under nbs/ (recursively, skipping _*.ipynb)
    python tools/nb_outputs.py nbs/01b_data.synthetic.ipynb 'nbs/4*.ipynb'   # paths or globs
    python tools/nb_outputs.py --slow                  # also run `#| slow` cells
    python tools/nb_outputs.py --jobs 2                # two notebooks at once (each notebook in its own process)
    python tools/nb_outputs.py --check                 # no run: exit 1 listing notebooks that draw but show no figure

A developer's loop: edit nbs/THAT.ipynb -> `nbdev_export` -> `python tools/nb_outputs.py nbs/THAT.ipynb` -> commit.
`make outputs` runs it on every notebook.

Each notebook runs in a fresh process, its cells in execnb's CaptureShell as `nbdev_test` runs them (cwd = its folder; `#| eval: false`
and the `tst_flags` cells skipped). A skipped cell keeps the figures and tables it had. Figures are PNG at 72 dpi with
fixed SVG ids; PNG bytes are the same run to run as long as the notebook draws the same thing. The notebook is written
in nbdev_clean's form, so `tools/check_sync.sh` still passes. A notebook with a failing cell is reported with the cell
and its traceback and left unchanged; the tool then exits 1. `--check` uses the rule of the before-stop hook
(../shared/hooks/lib/nb_figures.py): a notebook with a drawing cell must carry at least one image output."""
import argparse, glob, json, os, re, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from pathlib import Path
from execnb.nbio import write_nb
from execnb.shell import CaptureShell
from fastcore.basics import str2bool
from fastcore.xtras import working_directory
from nbdev.clean import clean_nb
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.frontmatter import FrontmatterProc
from nbdev.process import NBProcessor

# The inline backend renders with Agg at the figure's dpi (savefig.dpi is not used by it), so figure.dpi sets the PNG size.
MPL_SETUP = "import matplotlib as mpl; mpl.rcParams.update({'figure.dpi': 72, 'figure.max_open_warning': 0, 'svg.hashsalt': 'boundaryseg'})"
PIPE_RULE = re.compile(r'^ *\|?( *:?-+:? *\|)+( *:?-+:? *)?$', re.M)  # the |---|:--:| line under a markdown table's header
DRAW = re.compile(r'plt\.|\.show\(|show_\w+\(|plot_\w+\(|imshow|subplots|figure\(')  # the hook's notion of a drawing cell

def is_figure(o): return bool({'image/png', 'image/svg+xml'} & o.get('data', {}).keys())

def keep(o):
    "Is output `o` a figure or a displayed table?"
    text = lambda k: ''.join(o.get('data', {}).get(k, ''))
    return is_figure(o) or '<table' in text('text/html') or bool(PIPE_RULE.search(text('text/markdown')))

def execute(fn, skip_flags):
    "Run notebook `fn` as nbdev_test does: the kept outputs of each code cell by cell id (None if it sets skip_exec)."
    nb = NBProcessor(fn, procs=FrontmatterProc, process=True).nb
    if str2bool(getattr(nb, 'frontmatter_', {}).get('skip_exec', False)): return None
    ran = []
    def no_eval(cell):  # nbdev.test.test_nb's rule
        if cell.cell_type != 'code' or 'nbdev_export(' in cell.source: return True
        d = getattr(cell, 'directives_', {}) or {}
        if d.get('eval:', [''])[0].lower() == 'false' or skip_flags & d.keys(): return True
        ran.append(cell)
    k = CaptureShell(fn, mpl_format='png')
    k.run(MPL_SETUP)
    try:
        with working_directory(fn.parent): k.run_all(nb, exc_stop=True, preproc=no_eval)
    except Exception: raise RuntimeError(f'cell {ran[-1].id}:\n{ran[-1].source}\n{k.prettytb(fname=fn)}') from None
    return {c.id: [o for o in c.outputs if keep(o)] for c in nb.cells if c.cell_type == 'code'}

def refresh(fn, skip_flags):
    "Execute `fn` and write it back with only its figures and tables; print a one-line summary or the error; did it run?"
    multiprocessing.set_start_method(None, force=True)  # the notebook's own workers (DataLoader, DDP) start the usual way, not spawned
    name, fn = fn, Path(fn).resolve()
    t0, size0 = time.time(), fn.stat().st_size
    try: outs = execute(fn, skip_flags)
    except RuntimeError as e:
        print(f'{name}: FAILED, left unchanged: {e}', file=sys.stderr, flush=True)
        return False
    if outs is None:
        print(f'{name}: not run (skip_exec), left unchanged', flush=True)
        return True
    nb, cfg = json.loads(fn.read_text(encoding='utf-8')), get_config()
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'] = outs[c['id']]
    clean_nb(nb, cfg.clear_all, cfg.allowed_metadata_keys.split(), cfg.allowed_cell_metadata_keys.split(), cfg.clean_ids)
    write_nb(nb, fn)
    kept = [o for v in outs.values() for o in v]
    nfig = sum(map(is_figure, kept))
    print(f'{name}: {time.time() - t0:.1f} s, {nfig} figures, {len(kept) - nfig} tables, '
          f'{size0 / 1024:.0f} -> {fn.stat().st_size / 1024:.0f} kB', flush=True)
    return True

def missing_figures(fn):
    "Does notebook `fn` have a drawing cell (not an export) but no committed image output?"
    code = [c for c in json.loads(Path(fn).read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']
    draws = any(DRAW.search(''.join(c['source'])) and not ''.join(c['source']).lstrip().startswith('#| export') for c in code)
    return draws and not any(is_figure(o) for c in code for o in c.get('outputs', []))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('paths', nargs='*', help='notebooks or globs (default: all notebooks under nbs/)')
    p.add_argument('--slow', action='store_true', help='also run `#| slow` cells (skipped like nbdev_test does)')
    p.add_argument('--jobs', type=int, default=1, help='notebooks run at once')
    p.add_argument('--check', action='store_true', help='run nothing; fail if a drawing notebook has no figure output')
    a = p.parse_args()
    fns = sorted({f for g in a.paths for f in glob.glob(g, recursive=True)}) if a.paths else sorted(os.path.relpath(f) for f in nbglob())
    if not fns: sys.exit('no notebooks matched')
    if a.check:
        bad = [f for f in fns if missing_figures(f)]
        for f in bad: print(f'{f}: draws figures but has no committed figure output: run python tools/nb_outputs.py {f}')
        sys.exit(1 if bad else 0)
    sys.path.insert(0, str(get_config().config_path))  # as nbdev_test: this checkout's package, not an installed one
    skip = set(get_config().tst_flags.split()) - ({'slow'} if a.slow else set())
    # A fresh process per notebook, like a kernel: nothing (random state, rcParams, IPython's own __main__) leaks between notebooks.
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context('spawn'), max_tasks_per_child=1) as ex:
        sys.exit(0 if all(ex.map(refresh, fns, [skip] * len(fns))) else 1)
