"""Speed of our PQ vs panopticapi's `pq_compute` run single-process (`pq_compute_single_core`), same inputs.

Inputs (COCO panoptic format, written once as PNG + json):
  - coco: the two real COCO val2017 panoptic ground truths of the fixtures (640x427, 640x360) against `--k`
    perturbed predictions each (segments dropped, merged, split, shifted, relabelled; see tests/test_metrics_panoptic.py);
  - cityscapes: the real Cityscapes fixture ground truth upsampled 8x to 1024x2048 (converted with
    `sem_inst_to_panoptic`, crowd groups as crowd), against the real HRNet+OCR full-resolution semantic predictions
    with the ground-truth instances shifted as instances (`--n` pairs).
Timing. panopticapi runs in the reference interpreter (tests/ref/ref_panoptic.py, op `pq_single_core`), which times
itself with time.perf_counter (interpreter start-up and imports excluded); ours is timed in this process. Best of
`--rounds` x `--repeat` (rounds alternate reference and ours), one thread. Two comparisons per input set:
  - compute: PNGs decoded beforehand on both sides (the reference's Image.open served from memory; ours starts from
    the same decoded RGB arrays: `rgb2id` + `pq_stats` + `pq_scores`);
  - from files: both read the PNGs (ours: `pq_from_files`).
Results must be equal (checked); the ratio is reference time / our time.
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from boundaryseg.core import load_ids, load_rgb_ids, fixtures_path, save_png, rgb2id, id2rgb
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.metrics.panoptic import pq_stats, pq_scores, pq_from_files, sem_inst_to_panoptic, panoptic_categories

ROOT = Path(__file__).resolve().parents[1]
REF_PY = ROOT/'.venv-ref'/'bin'/'python'
sys.path.insert(0, str(ROOT/'tests'))
from test_metrics_panoptic import perturb_coco, perturb_cs  # the perturbations of the cross-check tests


def best(f, repeat):
    t = float('inf')
    for _ in range(repeat):
        t0 = time.perf_counter(); r = f(); t = min(t, time.perf_counter() - t0)
    return t, r


def write_set(d, categories, gt_anns, gt_pans, pred_anns, pred_pans):
    "gt.json + gt/ and pred.json + pred/ in COCO panoptic format."
    for name, anns, pans in (('gt', gt_anns, gt_pans), ('pred', pred_anns, pred_pans)):
        (d/name).mkdir(parents=True)
        for a, p in zip(anns, pans): save_png(id2rgb(p), d/name/a['file_name'])
        (d/f'{name}.json').write_text(json.dumps(dict(annotations=anns, categories=categories)))
    return dict(gt_json=str(d/'gt.json'), gt_folder=str(d/'gt'), pred_json=str(d/'pred.json'), pred_folder=str(d/'pred'))


def coco_set(d, k):
    src = fixtures_path()/'coco_panoptic'/'sample_data'
    gj = json.loads((src/'panoptic_examples.json').read_text())
    cats = gj['categories']
    gts, gps, pas, pps = [], [], [], []
    for j in range(k):
        rng = np.random.default_rng(j)
        for a in gj['annotations']:
            pan = rgb2id(load_rgb_ids(src/'panoptic_examples'/a['file_name']))
            pp, ps = perturb_coco(pan, a['segments_info'], cats, rng, 'mix')
            name = f"{a['image_id']}_{j}"
            gts.append(dict(image_id=name, file_name=f'{name}.png', segments_info=a['segments_info'])); gps.append(pan)
            pas.append(dict(image_id=name, file_name=f'{name}.png', segments_info=ps)); pps.append(pp)
    return write_set(d, cats, gts, gps, pas, pps)


def cityscapes_set(d, n):
    fx = fixtures_path()
    gt_dir = fx/'cityscapes'/'gtFine'/'val'/'frankfurt'
    up = lambda a: np.repeat(np.repeat(a, 8, 0), 8, 1)
    gsem = up(CITYSCAPES.encode(load_ids(gt_dir/'frankfurt_000000_000294_gtFine_labelIds.png')))
    ginst = up(load_ids(gt_dir/'frankfurt_000000_000294_gtFine_instanceIds.png'))
    hr = [CITYSCAPES.encode(load_ids(fx/'cityscapes_fullres_predictions'/'frankfurt'/f'frankfurt_000000_{f}_pred_labelIds.png'))
          for f in ('000294', '002196')]
    cats = [dict(id=int(i), isthing=int(t), name=c) for i, t, c in zip(CITYSCAPES.train_to_native, CITYSCAPES.thing, CITYSCAPES.classes)]
    gpan, gsegs = sem_inst_to_panoptic(gsem, ginst, CITYSCAPES, min_inst=1000, cat_ids=CITYSCAPES.train_to_native)
    gts, gps, pas, pps = [], [], [], []
    for k in range(n):
        _, pinst = perturb_cs(gsem, ginst, np.random.default_rng(k))
        ppan, psegs = sem_inst_to_panoptic(hr[k % 2], pinst, CITYSCAPES, no_inst='void', cat_ids=CITYSCAPES.train_to_native)
        name = f'frankfurt_{k:06d}_{k:06d}'
        gts.append(dict(image_id=name, file_name=f'{name}.png', segments_info=gsegs)); gps.append(gpan)
        pas.append(dict(image_id=name, file_name=f'{name}.png', segments_info=psegs)); pps.append(ppan)
    return write_set(d, cats, gts, gps, pas, pps)


def ours_compute(files):
    "PQ from decoded RGB arrays: the work panopticapi does after Image.open."
    gj, pj = json.loads(Path(files['gt_json']).read_text()), json.loads(Path(files['pred_json']).read_text())
    rgb = lambda folder, a: np.asarray(Image.open(Path(folder)/a['file_name']).convert('RGB'))
    pairs = [(rgb(files['gt_folder'], g), g['segments_info'], rgb(files['pred_folder'], p), p['segments_info'])
             for g, p in zip(gj['annotations'], pj['annotations'])]
    ids, isthing, _ = panoptic_categories(gj['categories'])
    def run():
        st = sum(pq_stats(*pr, gj['categories']) for pr in pairs)
        return pq_scores(st, isthing, ids)
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--k', type=int, default=5, help='perturbed predictions per COCO image')
    ap.add_argument('--n', type=int, default=3, help='Cityscapes-size (1024x2048) image pairs')
    ap.add_argument('--repeat', type=int, default=3, help='best of this many runs per round')
    ap.add_argument('--rounds', type=int, default=2, help='alternating rounds of reference and ours')
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, diff = [], 0.
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sets = {f'coco ({2 * args.k} pairs, 640x~400)': coco_set(d/'coco', args.k),
                f'cityscapes ({args.n} pairs, 1024x2048)': cityscapes_set(d/'cs', args.n)}
        for label, files in sets.items():
            jobs = [dict(files, name='compute', op='pq_single_core', preload=True, repeat=args.repeat),
                    dict(files, name='files', op='pq_single_core', preload=False, repeat=args.repeat)]
            (d/'jobs.json').write_text(json.dumps({'cases': jobs}))
            compute = ours_compute(files)
            ours, ref = {}, {}
            for _ in range(args.rounds):
                subprocess.run([str(REF_PY), str(ROOT/'tests'/'ref'/'ref_panoptic.py'), str(d/'jobs.json'), str(d/'out.json')], check=True)
                for name, r in json.loads((d/'out.json').read_text()).items():
                    if name not in ref or r['seconds'] < ref[name]['seconds']: ref[name] = r
                for name, f in (('compute', compute), ('files', lambda: pq_from_files(files['gt_json'], files['pred_json'], files['gt_folder'], files['pred_folder']))):
                    t, s = best(f, args.repeat)
                    if name not in ours or t < ours[name][0]: ours[name] = (t, s)
            for name, what in (('compute', 'decoded arrays'), ('files', 'from PNG files')):
                t, s = ours[name]
                for part in ('All', 'Things', 'Stuff'):
                    assert s[part]['n'] == ref[name][part]['n']
                    diff = max(diff, *(abs(s[part][k] - ref[name][part][k]) for k in ('pq', 'sq', 'rq')))
                rows.append(dict(inputs=label, case=what, ours_s=t, pq_compute_single_core_s=ref[name]['seconds'],
                                 ratio=ref[name]['seconds'] / t, pq=s['All']['pq']))
    assert diff < 1e-9, f'results differ from panopticapi by {diff}'
    print(f"PQ vs panopticapi pq_compute_single_core: best of {args.rounds}x{args.repeat}, 1 thread; max |ours - ref| = {diff:.1e}")
    print(f"| {'inputs':<32} | {'case':<15} | {'ours (s)':>9} | {'pq_compute (s)':>14} | {'ratio':>6} |")
    print(f"|{'-' * 34}|{'-' * 17}|{'-' * 11}|{'-' * 16}|{'-' * 8}|")
    for r in rows: print(f"| {r['inputs']:<32} | {r['case']:<15} | {r['ours_s']:9.4f} | {r['pq_compute_single_core_s']:14.4f} | {r['ratio']:5.1f}x |")
    out = ROOT/'bench'/'out'
    out.mkdir(parents=True, exist_ok=True)
    (out/'bench_pq.json').write_text(json.dumps(dict(k=args.k, n=args.n, repeat=args.repeat, rounds=args.rounds, threads=1,
                                                     max_abs_diff=diff, rows=rows), indent=1))


if __name__ == '__main__':
    main()
