"""On-the-fly boundary GT: `seg_boundaries` (vectorised torch scan) against `seg_boundaries_ref` (SBCB's algorithm:
scipy distance transforms, one class / one instance at a time), both in this process, on a realistic 2048x1024
19-class map (the HRNet+OCR prediction fixture mapped to train ids). Checks that both give the same pixels.

    python bench/bench_boundaries.py [--repeat 5] [--radius 2] [--threads 1] [--no-figure]

Torch runs on one thread by default: the scipy reference is single-threaded, fastai's DataLoader workers (where
the targets are computed) run torch on one thread, and on a loaded machine extra threads only add contention.

Writes bench/out/boundaries.json (the table) and bench/out/boundaries_fixture.png (per-class boundaries of the
Cityscapes fixture and its 'thin' protocol GT)."""
import argparse, json, os, statistics, time
from pathlib import Path

import numpy as np
import torch
from skimage.measure import label as connected_components

from boundaryseg.core import atomic_write, fixtures_path, load_ids, load_image
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.data.boundaries import (seg_boundaries, binary_boundaries, seg_boundaries_ref, eval_boundaries, boundary_lut)

OUT = Path(__file__).resolve().parent/'out'


def timed(f, repeat):
    "Median wall time of `repeat` calls (after one warm-up call when repeat > 1) and the last result."
    if repeat > 1: f()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter(); r = f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts), r


def cases(radius):
    m = CITYSCAPES.encode(load_ids(fixtures_path()/'cityscapes_fullres_predictions'/'frankfurt'/'frankfurt_000000_000294_pred_labelIds.png'))
    ign = m.copy(); ign[ign == 8] = 255  # vegetation ignored: ignored pixels then border most classes
    # instances: connected components of each thing class, numbered per class (a realistic instance map)
    inst = np.zeros(m.shape, np.int32)
    for k in CITYSCAPES.thing_ids:
        cc = connected_components(m == k, connectivity=1)
        inst[cc > 0] = cc[cc > 0]
    return [('semantic', m, None), ('semantic, vegetation ignored', ign, None), ('instance-sensitive', m, inst)]


def main(repeat=5, radius=2, figure=True, threads=1):
    torch.set_num_threads(threads)
    rows = []
    for name, m, inst in cases(radius):
        things = CITYSCAPES.thing_ids if inst is not None else None
        mt, it = torch.from_numpy(m)[None], None if inst is None else torch.from_numpy(inst)[None]
        t_fast, fast = timed(lambda: seg_boundaries(mt, 19, radius, inst=it, thing_ids=things), repeat)
        t_bin, _ = timed(lambda: binary_boundaries(mt, radius, inst=it, thing_ids=things), repeat)
        t_ref, ref = timed(lambda: seg_boundaries_ref(m, 19, radius, inst=inst, thing_ids=things), 1)
        equal = bool(np.array_equal(fast[0].numpy(), ref))
        rows.append(dict(case=name, size=f"{m.shape[1]}x{m.shape[0]}", classes=19, radius=radius,
                         instances=0 if inst is None else int(len(np.unique(inst)) - 1),
                         ref_scipy_s=round(t_ref, 4), seg_boundaries_s=round(t_fast, 4), binary_boundaries_s=round(t_bin, 4),
                         speedup=round(t_ref / t_fast, 1), equal_pixels=equal, boundary_pixels=int(ref.sum())))
    info = dict(torch=torch.__version__, threads=torch.get_num_threads(), device='cpu', repeat=repeat,
                load_average=list(os.getloadavg()), cpus=os.cpu_count(), rows=rows)
    OUT.mkdir(parents=True, exist_ok=True)
    with atomic_write(OUT/'boundaries.json', 'w') as f: json.dump(info, f, indent=1)
    w = max(len(r['case']) for r in rows)
    print(f"{'case':<{w}}  {'ref (scipy)':>11}  {'seg_boundaries':>14}  {'binary':>8}  {'speed-up':>8}  equal")
    for r in rows:
        print(f"{r['case']:<{w}}  {r['ref_scipy_s']:>10.3f}s  {r['seg_boundaries_s']:>13.3f}s  {r['binary_boundaries_s']:>7.3f}s"
              f"  {r['speedup']:>7.1f}x  {r['equal_pixels']}")
    print(f"(2048x1024, 19 classes, radius {radius}, CPU, {info['threads']} torch threads; wrote {OUT/'boundaries.json'})")
    if figure: write_figure()
    if not all(r['equal_pixels'] for r in rows): raise SystemExit("seg_boundaries differs from the reference")
    return info


def write_figure():
    "Per-class boundaries (r=2, instance-sensitive) of the Cityscapes fixture, and its 'thin' protocol GT."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cs = fixtures_path()/'cityscapes'
    stem = 'frankfurt_000000_000294'
    img = load_image(cs/'leftImg8bit'/'val'/'frankfurt'/f'{stem}_leftImg8bit.png')
    lab = load_ids(cs/'gtFine'/'val'/'frankfurt'/f'{stem}_gtFine_labelIds.png')
    inst = load_ids(cs/'gtFine'/'val'/'frankfurt'/f'{stem}_gtFine_instanceIds.png')
    bm = boundary_lut(CITYSCAPES)[lab]
    panels = [('semantic r=2 (IS)', seg_boundaries(bm, 19, 2, inst=inst, void_index=254)),
              ("'thin' eval GT (half res)", eval_boundaries(bm, 19, 'thin', inst=inst, void_index=254))]
    ks = [k for k in range(19) if panels[0][1][k].any()]
    fig, axs = plt.subplots(len(panels), len(ks) + 1, figsize=(2.2 * (len(ks) + 1), 1.4 * len(panels) + 0.4))
    for row, (title, e) in zip(axs, panels):
        row[0].imshow(img); row[0].set_title(title, fontsize=7)
        for ax, k in zip(row[1:], ks): ax.imshow(e[k], cmap='gray', interpolation='nearest'); ax.set_title(CITYSCAPES.classes[k], fontsize=7)
        for ax in row: ax.axis('off')
    fig.tight_layout()
    with atomic_write(OUT/'boundaries_fixture.png') as f: fig.savefig(f, format='png', dpi=120)
    print(f"wrote {OUT/'boundaries_fixture.png'}")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--repeat', type=int, default=5, help='timed runs of the fast implementations (median)')
    p.add_argument('--radius', type=float, default=2)
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    p.add_argument('--no-figure', action='store_true')
    a = p.parse_args()
    main(a.repeat, a.radius, not a.no_figure, a.threads)
