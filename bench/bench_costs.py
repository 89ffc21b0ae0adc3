"""Parameters and FLOPs of the models the papers table, computed from the models this library builds, next to the
papers' numbers.

    .venv/bin/python bench/bench_costs.py            # the table (ours vs paper, ratio)
    .venv/bin/python bench/bench_costs.py --json     # the rows as a JSON list of {model, params, gflops, paper_params, paper_gflops}
    .venv/bin/python bench/bench_costs.py --only sbcb  # the rows of one file
    .venv/bin/python bench/bench_costs.py --only sbcb --out bench/results/sbcb_costs.json   # rows kept for a tutorial

Rows come from the `bench/costs_*.py` files, one per method; each defines `ROWS`, a list of dicts:
`model` (name), `build` (a function returning the model), `size` (input H, W), `paper_params`, `paper_gflops` (None where
the paper gives none), `rules` ('mmcv': SBCB's mmcv get_flops counting; 'macs': multiply-accumulates of conv/linear
layers), optionally `train` (count in training mode: training-only heads included), `parts` (a function of the model
returning the submodules to count), `inputs` (a function of the size returning the model's inputs, for models that
read more than the image, e.g. MSCI's super-pixels) and `note`. Counting: `boundaryseg.models.costs.model_costs` (forward hooks on one
pass of a zero image; see its notebook for the rules)."""
import argparse, importlib.util, json, sys, time
from pathlib import Path
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from boundaryseg.models.costs import model_costs  # noqa: E402


def load_rows(only=None):
    rows = []
    for f in sorted(HERE.glob('costs_*.py')):
        name = f.stem[len('costs_'):]
        if only and name not in only: continue
        spec = importlib.util.spec_from_file_location(f'costs_{name}', f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        rows += [dict(r, group=name) for r in mod.ROWS]
    return rows


def measure(r):
    m = r['build']()
    t = time.perf_counter()
    c = model_costs(m, r['size'], rules=r.get('rules', 'mmcv'), train=r.get('train', False),
                    modules=r['parts'](m) if r.get('parts') else None, inputs=r['inputs'](r['size']) if r.get('inputs') else None)
    return dict(model=r['model'], group=r['group'], size=list(r['size']), rules=r.get('rules', 'mmcv'), params=c['params'],
                gflops=round(c['gflops'], 3), paper_params=r.get('paper_params'), paper_gflops=r.get('paper_gflops'),
                seconds=round(time.perf_counter() - t, 1), note=r.get('note', ''))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--json', action='store_true', help='print the rows as a JSON list')
    ap.add_argument('--only', nargs='*', help='only these costs_<name>.py files')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default=str(HERE/'out'/'costs.json'), help='where the rows are written as JSON')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = []
    for r in load_rows(a.only):
        res = measure(r)
        out.append(res)
        if not a.json:
            pp, pg = res['paper_params'], res['paper_gflops']
            rp = f"{res['params'] / pp:6.3f}" if pp else '     -'
            rg = f"{res['gflops'] / pg:6.3f}" if pg else '     -'
            print(f"{res['model']:<46} {res['size'][0]:>4}x{res['size'][1]:<5} {res['params'] / 1e6:9.3f}M "
                  f"{'%9.2fM' % (pp / 1e6) if pp else '        -'} {rp}  {res['gflops']:9.1f} {'%8.1f' % pg if pg else '       -'} {rg}  {res['rules']}",
                  flush=True)
    if a.json: print(json.dumps([{k: r[k] for k in ('model', 'params', 'gflops', 'paper_params', 'paper_gflops')} for r in out], indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
