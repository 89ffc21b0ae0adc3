"""Test-NMS: boundaryseg.metrics.nms.edge_nms vs pyEdgeEval's fast_nms(r=1, s=5, m=1.01), time in one process on one
thread, and equality per pixel.

Input: the Cityscapes fixture frame's boundary probabilities for the 19 classes, as bench_sbd.py makes them (the class
boundaries of the real HRNet+OCR prediction of the frame, blurred and damped, at 1024x2048), taken to the evaluation
resolution of the Cityscapes protocols (512x1024, nearest, as the evaluators resize prediction PNGs), in two forms:

  * 8-bit: rounded to 1/255, what pyEdgeEval's evaluators read from the prediction PNGs (most of each map is 0);
  * float: the same maps unrounded with a floor of 1e-4 (a sigmoid is never 0): no zero pixel anywhere;
  * float32: those maps in float32, the dtype of a model's sigmoid (both filter them in float32).

Time: process CPU time of `edge_nms` on the (19, 512, 1024) stack (its default backend, the compiled numba kernel, and
its torch path, `backend='torch'`) and of `fast_nms` on each of its 19 maps, in the same process, the three in rotated
order in each round; the ratios are the medians of the rounds' ratios to `fast_nms`. pyEdgeEval is imported from the
reference environment's site-packages (its Cython NMS loop; its filters then run on this environment's scipy, which
sums some 9-tap filters in another order at the last bit: fine for timing). Equality: pyEdgeEval in its own environment
(tests/ref/ref_pyedgeeval.py, op 'nms'), every pixel of both backends compared.

Compile time: the numba kernel's first call in a fresh process with an empty cache (NUMBA_CACHE_DIR in a temporary
folder), per dtype, and the same in a second process that finds the cache.

    .venv/bin/python bench/bench_nms.py          # 5 rounds per input, about 2 minutes
    .venv/bin/python bench/bench_nms.py -n 9

Writes bench/results/nms_speed.json. Target (issue 20): ratio >= 10 on the 8-bit and on the dense float maps; outputs equal to the bit."""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(HERE))
from boundaryseg.core import atomic_write  # noqa: E402
from boundaryseg.data.transforms import resize_nearest  # noqa: E402
from boundaryseg.metrics.nms import edge_nms  # noqa: E402
from bench_sbd import inputs  # noqa: E402

REF_PY = ROOT/'.venv-ref'/'bin'/'python'
REF_SITE = next((ROOT/'.venv-ref'/'lib').glob('python3*/site-packages'), None)


def maps():
    "The inputs (19, 512, 1024): 8-bit and dense float64 boundary probabilities, and the dense ones in float32."
    _, _, soft = inputs(full=True)  # (19, 1024, 2048), already 8-bit
    half = resize_nearest(torch.from_numpy(soft), (512, 1024)).numpy().astype(np.float64)
    rng = np.random.default_rng(1)
    dense = np.clip(half + rng.uniform(-0.5, 0.5, half.shape) / 255, 1e-4, 1)  # undo the rounding, no zeros
    return {'8-bit': half, 'float': dense, 'float32': dense.astype(np.float32)}


def reference_nms(x, tmp):
    "pyEdgeEval's fast_nms of every map, run in the reference environment."
    tmp = Path(tmp)
    np.save(tmp/'x.npy', x)
    (tmp/'task.json').write_text(json.dumps(dict(op='nms', x=str(tmp/'x.npy'), out=str(tmp/'y.npy'), keep_dtype=x.dtype == np.float32)))
    r = subprocess.run([str(REF_PY), str(ROOT/'tests'/'ref'/'ref_pyedgeeval.py'), str(tmp/'task.json')], capture_output=True, text=True)
    if r.returncode: raise RuntimeError(r.stderr[-3000:])
    return np.load(tmp/'y.npy')


COMPILE = """
import time, numpy as np
t = time.time(); from boundaryseg.metrics.nms import edge_nms; t_import = time.time() - t
out = dict(import_s=round(t_import, 2))
for dt in ('float64', 'float32'):
    x = np.random.default_rng(0).random((1, 64, 64)).astype(dt)
    t = time.time(); edge_nms(x); out[dt + '_first_call_s'] = round(time.time() - t, 2)
print(out)
"""


def compile_times():
    "First calls of the kernel in a fresh process without, then with, numba's on-disk cache."
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp, PYTHONPATH=str(ROOT))
        run = lambda: eval(subprocess.run([sys.executable, '-c', COMPILE], env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        return dict(cold=run(), cached=run())


def cpu(f):
    t = time.process_time(); f(); return time.process_time() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('-n', type=int, default=5, help='timed rounds per input')
    a = ap.parse_args()
    torch.set_num_threads(1)
    if REF_SITE is None: sys.exit(f"reference environment missing: {ROOT/'.venv-ref'} (make ref-env)")
    sys.path.append(str(REF_SITE))
    from pyEdgeEval.preprocess import fast_nms
    rows = []
    for name, x in maps().items():
        fns = dict(numba=lambda: edge_nms(x), pyedgeeval=lambda: [fast_nms(m, r=1, s=5, m=1.01) for m in x],
                   torch=lambda: edge_nms(x, backend='torch'))
        for f in fns.values(): f()  # warm-up
        t = {k: [] for k in fns}
        for i in range(a.n):
            for k in list(fns)[i % 3:] + list(fns)[:i % 3]: t[k].append(cpu(fns[k]))
        with tempfile.TemporaryDirectory() as tmp: ref = reference_nms(x, tmp)
        row = dict(input=name, shape=list(x.shape), zero_fraction=round(float((x == 0).mean()), 4), pixels=int(ref.size))
        for k in ('numba', 'torch'):
            got = edge_nms(x, backend=k)
            ratios = [tr / tk for tr, tk in zip(t['pyedgeeval'], t[k])]
            row[k] = dict(s=round(statistics.median(t[k]), 3), ratio=round(statistics.median(ratios), 2), ratios=[round(v, 2) for v in ratios],
                          pixels_differing=int((got != ref).sum()), max_abs_diff=float(np.abs(got - ref).max()))
        row['pyedgeeval_s'] = round(statistics.median(t['pyedgeeval']), 3)
        rows.append(row)
        print(f"{name:>7} {x.shape}  zeros {100 * row['zero_fraction']:.1f}%  fast_nms {row['pyedgeeval_s']:.3f}s  " +
              "  ".join(f"{k} {row[k]['s']:.3f}s ratio {row[k]['ratio']:.1f} (rounds {row[k]['ratios']}) differing pixels {row[k]['pixels_differing']}"
                        for k in ('numba', 'torch')), flush=True)
    comp = compile_times()
    print(f"numba kernel, first call in a fresh process: {comp['cold']} (empty cache), {comp['cached']} (cache found)", flush=True)
    with atomic_write(HERE/'results'/'nms_speed.json', 'w') as f:
        json.dump(dict(rows=rows, compile=comp, load=os.getloadavg(), threads=1, torch=torch.__version__, omp=os.environ.get('OMP_NUM_THREADS')), f, indent=1)


if __name__ == '__main__':
    main()
