"""SBD evaluation (99 thresholds, Cityscapes 'thin' and 'raw' protocols): boundaryseg.metrics.sbd vs pyEdgeEval.

Same inputs for both: the Cityscapes fixture frame's GT (labelIds + instanceIds, upsampled 8x to 1024x2048, boundaries
by `eval_boundaries`, which equals pyEdgeEval's GT conversion) and a soft boundary prediction made from the real
HRNet+OCR prediction of that frame (its class boundaries, blurred and damped), resized to the evaluation resolution as
the evaluators resize prediction PNGs. pyEdgeEval runs in the reference venv (one process, `evaluate_boundaries_threshold`
per class + `calculate_metrics`); its time excludes the subprocess start-up.

    python bench/bench_sbd.py          # a 512x1024 crop of the frame (evaluated at 256x512), ~2 min
    python bench/bench_sbd.py --full   # the whole 1024x2048 frame (evaluated at 512x1024), ~8-10 min

Writes bench/out/sbd.json (timings, ratio, agreement, per-class table) and bench/out/sbd_pr.png (PR curves).

At dataset scale (issue 20): the whole 1024x2048 frame, 19 classes, 99 thresholds, each protocol with and without
Test-NMS; pyEdgeEval is timed once per protocol on this one image (minutes each: `--ref`, run under `nice`), its
seconds and counts kept in bench/results/sbd_scale_ref.json; the library is timed (process CPU, one thread, median of
`-n` interleaved repetitions) against those seconds, its totals checked against the reference's counts; then the
process-parallel path (`workers=`) on a few synthesised frames with 1 and 2 workers (wall time, and the CPU time of
every process, so that the parallel overhead is measured even when other jobs leave less than two free cores), and the
minutes a 500-image Cityscapes-sized set would take on 2 free cores. The library's thinning, matching and Test-NMS run
as numba kernels (issue 20); pyEdgeEval's seconds in the cache are process CPU time of one run each, measured under
whatever load the machine had then (each entry of the JSON says when and at which load average it was measured):

    nice -n 10 python bench/bench_sbd.py --scale --ref   # pyEdgeEval once per protocol missing from the cache (~4-5 min each)
    python bench/bench_sbd.py --scale -n 3               # the library, the ratios, the workers' scaling -> bench/results/sbd_scale.json
    python bench/bench_sbd.py --border-check             # the SBD ring cleared before / after Test-NMS, against pyEdgeEval
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from boundaryseg.core import load_ids, fixtures_path, atomic_write
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.data.boundaries import eval_boundaries, boundary_lut
from boundaryseg.data.transforms import resize_nearest
from boundaryseg.metrics.sbd import SBDMetrics, sbd_protocol, sbd_table, plot_pr, edge_scores, best_counts

REF_PY = ROOT/'.venv-ref'/'bin'/'python'
OUT = ROOT/'bench'/'out'
FRAME = 'frankfurt_000000_000294'


def inputs(full: bool):
    "Labels (train ids with void), instances and the soft HRNet-based prediction (19,H,W) at label resolution."
    fx = fixtures_path()
    d = fx/'cityscapes'/'gtFine'/'val'/'frankfurt'
    up = lambda a: a.repeat(8, 0).repeat(8, 1)
    lab = boundary_lut(CITYSCAPES)[up(load_ids(d/f'{FRAME}_gtFine_labelIds.png'))]
    inst = up(load_ids(d/f'{FRAME}_gtFine_instanceIds.png')).astype(np.int32)
    hr = CITYSCAPES.encode(load_ids(fx/'cityscapes_fullres_predictions'/'frankfurt'/f'{FRAME}_pred_labelIds.png'))
    if not full:  # a 512x1024 window around the image centre, where most classes meet
        sl = np.s_[256:768, 512:1536]
        lab, inst, hr = lab[sl], inst[sl], hr[sl]
    rng = np.random.default_rng(0)
    b = eval_boundaries(hr, 19, 'raw', scale=1.0).astype(np.float64)  # the model's class boundaries (r=2)
    soft = gaussian_filter(b, (0, 1.5, 1.5))
    soft = np.clip(soft / max(soft.max(), 1e-9) * rng.uniform(0.6, 1.0, soft.shape), 0, 1)
    return lab, inst, np.round(soft * 255) / 255  # 8-bit, as the evaluators read PNGs


def run_ref(pred, gt, proto, tmp, cpu=False):
    tmp = Path(tmp)
    np.save(tmp/'pred.npy', pred[None]); np.save(tmp/'gt.npy', gt[None])
    task = dict(op='eval', pred=str(tmp/'pred.npy'), gt=str(tmp/'gt.npy'), seg=None, thresholds=99, nproc=1,
                out=str(tmp/'ref.json'), out_counts=str(tmp/'ref_counts.npy'), **proto.counts_kwargs())
    (tmp/'task.json').write_text(json.dumps(task))
    r = subprocess.run([str(REF_PY), str(ROOT/'tests'/'ref'/'ref_pyedgeeval.py'), str(tmp/'task.json')], capture_output=True, text=True)
    if r.returncode: raise RuntimeError(r.stderr[-3000:])
    res = json.loads((tmp/'ref.json').read_text())
    if cpu: return np.load(tmp/'ref_counts.npy').astype(np.int64), res['per_class'], res['cpu_seconds']
    return np.load(tmp/'ref_counts.npy').astype(np.int64), res['per_class'], res['seconds']


RESULTS = ROOT/'bench'/'results'
SCALE_PROTOCOLS = ('cityscapes-thin', 'cityscapes-raw', 'cityscapes-thin+nms', 'cityscapes-raw+nms')


def scale_case(name, lab, inst, soft):
    "Protocol, GT and prediction at the evaluation resolution for 'protocol[+nms]'."
    proto = sbd_protocol(name.removesuffix('+nms'), apply_nms=name.endswith('+nms'))
    gt = eval_boundaries(lab, 19, proto.gt_protocol, inst=inst, void_index=254, scale=proto.scale)
    return proto, gt, resize_nearest(torch.from_numpy(soft), tuple(gt.shape[-2:])).numpy()


def scale_ref(protocols):
    "pyEdgeEval on the whole frame, once per protocol not yet in bench/results/sbd_scale_ref.json."
    f = RESULTS/'sbd_scale_ref.json'
    cache = json.loads(f.read_text()) if f.exists() else {}
    lab, inst, soft = inputs(True)
    for name in protocols:
        if name in cache: continue
        proto, gt, pred = scale_case(name, lab, inst, soft)
        with tempfile.TemporaryDirectory() as tmp: rc, rm, secs = run_ref(pred, gt, proto, tmp, cpu=True)
        cache[name] = dict(seconds=round(secs, 1), clock='process CPU, one thread', eval_size=list(gt.shape[-2:]), counts=rc[0].tolist(),
                           mf_ods=float(np.mean([m['ODS_f1'] for m in rm])), map=float(np.mean([m['AP'] for m in rm])),
                           measured=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), load_avg=[round(v, 1) for v in os.getloadavg()])
        print(f"pyEdgeEval {name}: {secs:.1f} s", flush=True)
        with atomic_write(f) as fh: fh.write(json.dumps(cache).encode())
    return cache


def frames(lab, inst, soft, n):
    "n Cityscapes-sized frames synthesised from the fixture frame: mirrored and shifted copies of labels and prediction."
    out = []
    for i in range(n):
        sh = 64 * (i // 2)
        f = (lambda a: np.roll(a[..., ::-1] if i % 2 else a, sh, -1).copy())
        out.append((f(lab), f(inst), f(soft)))
    return out


def scale(a):
    "The library at dataset scale: CPU per image vs pyEdgeEval's cached seconds, totals vs its counts, workers' scaling."
    import os, statistics
    torch.set_num_threads(1)
    protocols = a.protocols.split(',') if a.protocols else SCALE_PROTOCOLS
    f = RESULTS/'sbd_scale_ref.json'
    ref = json.loads(f.read_text()) if f.exists() else {}
    lab, inst, soft = inputs(True)
    cases = {n: scale_case(n, lab, inst, soft) for n in protocols}
    times = {n: [] for n in protocols}
    print('load average', os.getloadavg(), flush=True)
    accs = {}
    for rep in range(a.n):  # interleaved: every protocol once per repetition
        for n in (protocols if rep % 2 == 0 else protocols[::-1]):
            proto, gt, pred = cases[n]
            acc = SBDMetrics(19, proto)
            t = time.process_time(); acc.update(pred, gt); times[n].append(time.process_time() - t)
            accs[n] = acc
    rows = []
    for n in protocols:
        acc, r = accs[n], ref.get(n)
        row = dict(protocol=n, eval_size=list(cases[n][1].shape[-2:]), ours_cpu_s=round(statistics.median(times[n]), 2),
                   ours_runs=[round(t, 2) for t in times[n]], mf_ods=round(float(acc.scores()['mf_ods']), 5))
        if r:
            rc = np.array(r['counts'], np.int64)
            row.update(pyedgeeval_s=r['seconds'], ratio=round(r['seconds'] / row['ours_cpu_s'], 1), mf_ods_ref=round(r['mf_ods'], 5),
                       totals_equal=bool((acc.total[..., [1, 3]] == rc[..., [1, 3]]).all()),
                       matches_ge_ref=bool((acc.total[..., 0] >= rc[..., 0]).all()),
                       extra_matches_pct=round(100 * float(acc.total[..., 0].sum() - rc[..., 0].sum()) / max(rc[..., 0].sum(), 1), 4))
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != 'ours_runs'}), flush=True)
    # process-parallel path: the same frames with workers=1 (in process) and workers=2: wall time and the CPU time of every
    # process (this one and the workers, read from /proc before the pool stops), so that the parallel overhead is measured
    # even when the machine's other jobs leave less than two cores
    name = protocols[0]
    data = [scale_case(name, *x)[1:] for x in frames(lab, inst, soft, a.frames)]
    proto = cases[name][0]
    tick = os.sysconf('SC_CLK_TCK')
    def proc_cpu(pid):
        f = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12])) / tick
    runs = {1: [], 2: []}
    for rep in range(a.reps_workers):
        for w in ((1, 2) if rep % 2 == 0 else (2, 1)):
            acc = SBDMetrics(19, proto, workers=w)
            w0 = {}
            if w > 1:  # start the pool (its workers load the kernels) outside the timing, and count only the workers' CPU after it
                acc.update(*(x[None, :, :8, :8] for x in (data[0][1], data[0][0])))
                acc.wait()
                w0 = {p: proc_cpu(p) for p in acc._pool._processes}
            acc.reset()
            t, c = time.perf_counter(), time.process_time()
            for gt, pred in data: acc.update(pred[None], gt[None])
            s = acc.scores()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            if w > 1: cpu += sum(proc_cpu(p) - w0.get(p, 0) for p in acc._pool._processes)  # the workers' CPU during the timing
            acc.close()
            runs[w].append(dict(wall_s=round(wall, 2), cpu_s=round(cpu, 2)))
            if w == 1: base = s
            else: assert all(np.array_equal(s[k], base[k]) for k in ('ods_f', 'ois_f', 'ap')), "workers=2 changed the scores"
    med = lambda w, k: statistics.median(r[k] for r in runs[w])
    n = len(data)
    cpu1, cpu2 = med(1, 'cpu_s') / n, med(2, 'cpu_s') / n
    par = dict(protocol=name, frames=n, runs={str(k): v for k, v in runs.items()},
               wall_speedup_2_workers=round(med(1, 'wall_s') / med(2, 'wall_s'), 2),
               cpu_s_per_image_1_process=round(cpu1, 2), cpu_s_per_image_2_workers=round(cpu2, 2), parallel_overhead_pct=round(100 * (cpu2 / cpu1 - 1), 1),
               minutes_500_images_2_free_cores=round(500 * cpu2 / 2 / 60, 1), load_avg=os.getloadavg(),
               note='wall times share the machine with other jobs (load_avg); the 500-image estimate assumes 2 free cores and '
                    'the measured CPU per image of the 2-worker run (the parallel overhead included)')
    print(json.dumps(par), flush=True)
    RESULTS.mkdir(exist_ok=True)
    with atomic_write(RESULTS/'sbd_scale.json') as fh:
        fh.write(json.dumps(dict(rows=rows, workers=par, repetitions=a.n, threads=1, load_avg=os.getloadavg()), indent=1).encode())
    print(f"wrote {RESULTS/'sbd_scale.json'}")


def border_check():
    """Issue 19 #7: the SBD ring cleared before Test-NMS (pyEdgeEval's SBD evaluator) or after it (the old order), on the
    border case of tests/test_metrics_sbd.py::test_sbd_border_then_nms_equals_reference: cells whose predicted totals
    differ from pyEdgeEval's, and the largest class AP difference."""
    sys.path.insert(0, str(ROOT/'tests'))
    from test_metrics_sbd import scene, soft_from_gt
    from boundaryseg.metrics.sbd import edge_nms, edge_counts
    rng = np.random.default_rng(7)
    labs, insts = zip(*[scene(rng, 72, 96) for _ in range(2)])
    proto = sbd_protocol('sbd-raw', apply_nms=True)
    gt = np.stack([eval_boundaries(l, 5, 'raw', inst=i, scale=1.0, border=5) for l, i in zip(labs, insts)])
    full = np.stack([eval_boundaries(l, 5, 'raw', inst=i, scale=1.0) for l, i in zip(labs, insts)])
    pred = soft_from_gt(full, rng, sigma=1.5)
    pred[:, :, :7, :] = np.maximum(pred[:, :, :7, :], np.round(rng.uniform(0, 1, pred[:, :, :7, :].shape) * 255) / 255)
    new = SBDMetrics(5, proto, thresholds=33); new.update(pred, gt)
    old = edge_nms(pred); old[..., :5, :] = 0; old[..., -5:, :] = 0; old[..., :5] = 0; old[..., -5:] = 0
    oc = sum(edge_counts(p, g, 33, max_dist=0.02) for p, g in zip(old, gt))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp/'pred.npy', pred); np.save(tmp/'gt.npy', gt)
        task = dict(op='eval', pred=str(tmp/'pred.npy'), gt=str(tmp/'gt.npy'), seg=None, thresholds=33, nproc=1, border=5,
                    out=str(tmp/'ref.json'), out_counts=str(tmp/'ref_counts.npy'), **proto.counts_kwargs())
        (tmp/'task.json').write_text(json.dumps(task))
        subprocess.run([str(REF_PY), str(ROOT/'tests'/'ref'/'ref_pyedgeeval.py'), str(tmp/'task.json')], check=True, capture_output=True)
        R = np.load(tmp/'ref_counts.npy').astype(np.int64).sum(0)
        ap_ref = np.array([m['AP'] for m in json.loads((tmp/'ref.json').read_text())['per_class']])
    ap = lambda c: edge_scores(c, best_counts(c), 33)['ap']
    print(f"cells {R[..., 3].size}: predicted totals differing from pyEdgeEval's: ring after NMS (old) {(oc[..., 3] != R[..., 3]).sum()}, "
          f"ring before NMS (now) {(new.total[..., 3] != R[..., 3]).sum()}; max |class AP - pyEdgeEval|: old {np.abs(ap(oc) - ap_ref).max():.4f}, "
          f"now {np.abs(ap(new.total) - ap_ref).max():.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--full', action='store_true', help='the whole 1024x2048 frame instead of a 512x1024 crop')
    ap.add_argument('--protocols', default=None, help='comma-separated; default cityscapes-thin,cityscapes-raw (--scale: also +nms)')
    ap.add_argument('--scale', action='store_true', help='dataset scale: the whole frame, cached pyEdgeEval seconds, workers')
    ap.add_argument('--ref', action='store_true', help='with --scale: run pyEdgeEval for the protocols missing from the cache')
    ap.add_argument('-n', type=int, default=3, help='with --scale: interleaved repetitions')
    ap.add_argument('--frames', type=int, default=4, help='with --scale: synthesised frames for the workers measurement')
    ap.add_argument('--reps_workers', type=int, default=2, help='with --scale: interleaved repetitions of the workers measurement')
    ap.add_argument('--border-check', action='store_true', help='issue 19 #7: the SBD ring before / after Test-NMS vs pyEdgeEval')
    a = ap.parse_args()
    if a.border_check: return border_check()
    if a.scale:
        if a.ref: scale_ref(a.protocols.split(',') if a.protocols else SCALE_PROTOCOLS)
        else: scale(a)
        return
    a.protocols = a.protocols or 'cityscapes-thin,cityscapes-raw'
    lab, inst, soft = inputs(a.full)
    rows, scores = [], {}
    for name in a.protocols.split(','):
        proto = sbd_protocol(name)
        gt = eval_boundaries(lab, 19, proto.gt_protocol, inst=inst, void_index=254, scale=proto.scale)
        pred = resize_nearest(torch.from_numpy(soft), tuple(gt.shape[-2:])).numpy()
        acc = SBDMetrics(19, proto)
        t0 = time.perf_counter(); acc.update(pred, gt); ours_s = time.perf_counter() - t0
        s = acc.scores()
        with tempfile.TemporaryDirectory() as tmp: rc, rm, ref_s = run_ref(pred, gt, proto, tmp)
        ref = {k: np.array([m[k] for m in rm]) for k in ('ODS_f1', 'OIS_f1', 'AP')}
        cr, cref = acc.total[..., 0].sum(), rc[..., 0].sum()
        rows.append(dict(protocol=name, eval_size=list(gt.shape[-2:]), ours_s=round(ours_s, 2), pyedgeeval_s=round(ref_s, 1),
                         ratio=round(ref_s / ours_s, 1),
                         mf_ods=round(float(s['mf_ods']), 5), mf_ods_ref=round(float(ref['ODS_f1'].mean()), 5),
                         mf_ois=round(float(s['mf_ois']), 5), mf_ois_ref=round(float(ref['OIS_f1'].mean()), 5),
                         map=round(float(s['map']), 5), map_ref=round(float(ref['AP'].mean()), 5),
                         max_class_ods_diff=round(float(np.abs(s['ods_f'] - ref['ODS_f1']).max()), 5),
                         extra_matches_pct=round(100 * float(cr - cref) / max(cref, 1), 4),
                         totals_equal=bool((acc.total[..., [1, 3]] == rc[0][..., [1, 3]]).all())))
        scores[name] = s
        print(f"{name}: ours {ours_s:.1f}s  pyEdgeEval {ref_s:.1f}s  ratio {ref_s / ours_s:.1f}x  "
              f"MF-ODS {s['mf_ods']:.4f} vs {ref['ODS_f1'].mean():.4f}", flush=True)
    hdr = ['protocol', 'eval_size', 'ours_s', 'pyedgeeval_s', 'ratio', 'mf_ods', 'mf_ods_ref', 'map', 'map_ref', 'extra_matches_pct']
    print('\n| ' + ' | '.join(hdr) + ' |\n|' + '---|' * len(hdr))
    for r in rows: print('| ' + ' | '.join(str(r[h]) for h in hdr) + ' |')
    first = next(iter(scores))
    table = sbd_table(scores[first], CITYSCAPES.classes)
    print(f'\nper-class scores ({first}, ours):\n' + table)
    OUT.mkdir(parents=True, exist_ok=True)
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, len(scores), figsize=(6 * len(scores), 6), squeeze=False)
    for ax, (name, s) in zip(axs[0], scores.items()):
        plot_pr(s, CITYSCAPES.classes, ax=ax); ax.set_title(f"{name}: " + ax.get_title(), fontsize=9)
    fig.tight_layout()
    with atomic_write(OUT/'sbd_pr.png') as f: fig.savefig(f, format='png', dpi=110)
    per_class = {n: {c: dict(ods_f=round(float(s['ods_f'][k]), 5), ois_f=round(float(s['ois_f'][k]), 5), ap=round(float(s['ap'][k]), 5))
                     for k, c in enumerate(CITYSCAPES.classes)} for n, s in scores.items()}
    with atomic_write(OUT/'sbd.json') as f:
        f.write(json.dumps(dict(full=a.full, thresholds=99, results=rows, per_class=per_class, table=table), indent=1).encode())
    print(f"\nwrote {OUT/'sbd.json'} and {OUT/'sbd_pr.png'}")


if __name__ == '__main__': main()
