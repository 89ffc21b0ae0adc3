"""Speed of our semantic Boundary IoU counting (metrics.boundary_iou.biou_counts) vs the independent per-image, per-class
distance-transform reference (tests/ref/ref_biou_dt.py), same inputs, same process, one thread.

Inputs: 1024x2048 label maps, 19 classes: the real HRNet+OCR full-resolution predictions of the fixtures against (1) the
real Cityscapes fixture ground truth upsampled 8x (ignore regions included) and (2) the other prediction shifted by a
few pixels; `--n` pairs, cycling through these. Both sides count every pair for the same widths; results must be equal
(checked). Time: best of `--repeat` runs of the whole set, reference and ours alternating by round; the ratio is
reference time / our time.

    OMP_NUM_THREADS=1 python bench/bench_biou.py                    # mBIoU at 3 px
    OMP_NUM_THREADS=1 python bench/bench_biou.py --widths 3,5,9,12,0.005
"""
import argparse, json, os, sys, time
from pathlib import Path
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tests'/'ref'))
from ref_biou_dt import ref_biou_counts  # noqa: E402
from boundaryseg.core import load_ids, fixtures_path  # noqa: E402
from boundaryseg.data.labels import CITYSCAPES  # noqa: E402
from boundaryseg.metrics.boundary_iou import biou_counts, biou_scores  # noqa: E402


def inputs(n):
    fx = fixtures_path()
    gt = CITYSCAPES.encode(load_ids(fx/'cityscapes'/'gtFine'/'val'/'frankfurt'/'frankfurt_000000_000294_gtFine_labelIds.png'))
    gt = np.repeat(np.repeat(gt, 8, 0), 8, 1)
    hr = [CITYSCAPES.encode(load_ids(fx/'cityscapes_fullres_predictions'/'frankfurt'/f'frankfurt_000000_{f}_pred_labelIds.png'))
          for f in ('000294', '002196')]
    pairs = [(hr[0], gt), (np.roll(hr[1], (3, -4), (0, 1)), hr[1])]
    return [(np.roll(p, 2 * (k // 2), 1), g) for k, (p, g) in ((k, pairs[k % 2]) for k in range(n))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=2, help='image pairs (1024x2048)')
    ap.add_argument('--widths', default='3', help='band widths, comma separated: pixels, or fractions of the diagonal')
    ap.add_argument('--repeat', type=int, default=3, help='rounds; the best time of each side is kept')
    ap.add_argument('--out', default=None, help='also write the result as JSON here')
    args = ap.parse_args()
    torch.set_num_threads(1)
    widths = tuple(float(w) if float(w) < 1 else int(float(w)) for w in args.widths.split(','))
    pairs = inputs(args.n)
    ours = lambda: sum(biou_counts(p, g, 19, widths) for p, g in pairs)
    ref = lambda: ref_biou_counts([p for p, _ in pairs], [g for _, g in pairs], 19, widths)
    t_ref = t_ours = float('inf')
    for _ in range(args.repeat):
        t0 = time.perf_counter(); r = ref(); t_ref = min(t_ref, time.perf_counter() - t0)
        t0 = time.perf_counter(); o = ours(); t_ours = min(t_ours, time.perf_counter() - t0)
        if not np.array_equal(o, r): raise SystemExit("counts differ from the reference")
    res = dict(pairs=args.n, size=[1024, 2048], classes=19, widths=list(widths), threads=torch.get_num_threads(),
               omp_num_threads=os.environ.get('OMP_NUM_THREADS'), ref_s_per_image=t_ref / args.n, ours_s_per_image=t_ours / args.n,
               ratio=t_ref / t_ours, mbiou=biou_scores(o)['mbiou'].round(4).tolist())
    print(f"Boundary IoU counts, {args.n} pairs 1024x2048, 19 classes, widths {list(widths)}, one thread: reference "
          f"{res['ref_s_per_image'] * 1e3:.0f} ms/image, ours {res['ours_s_per_image'] * 1e3:.1f} ms/image: {res['ratio']:.1f}x "
          f"(equal counts; mBIoU {res['mbiou']})")
    if args.out: Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
