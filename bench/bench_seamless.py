#!/usr/bin/env python
"""Seamless Scene Segmentation: the combined model (one body, both heads, Sec. 5.4) vs two separate models (a semantic
FPN model with its own ResNet-50 + 4-level FPN + Mini-DeepLab head, and a Mask R-CNN-like model with ResNet-50 + 5-level
FPN + RPN + RoI heads), both followed by the same panoptic fusion, on this CPU. The paper's claim: the separate models
have ≈78.06M parameters against 51.43M and need ≈0.86 vs 0.51 TFLOP at 1024x2048.

Per configuration (CPU, batch 1, eval mode, random weights; one thread and process CPU time by default):
  * forward time: the runs of both configurations are interleaved (one inference of each per repeat, the order
    alternating); the ratio is the median of the per-repeat ratios. The separate configuration runs the instance branch
    with the combined model's own weights, so both make exactly the same detections and masks (random weights give ~100
    detections per image): the difference is the second body + FPN;
  * peak memory of one inference in a fresh subprocess per configuration: the resident memory added from before the
    models are built to the high-water mark of the inference (`VmHWM` after `/proc/self/clear_refs`), i.e. weights +
    activations + temporaries, and the weights' share (`VmRSS` after building);
  * parameters of the models each configuration holds.

    python bench/bench_seamless.py                    # 512x1024, 3 repeats (~5 min on an idle 2-core machine)
    python bench/bench_seamless.py --size 1024 2048   # the paper's resolution (~4x longer)
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from boundaryseg.models.zoo import seg_model  # noqa: E402
from boundaryseg.data.labels import CITYSCAPES  # noqa: E402

CS = dict(n_classes=19, thing=CITYSCAPES.thing.tolist())


def build(with_semantic=True):
    "The combined model, and the semantic model of the separate pair (its own body and a 4-level FPN)."
    torch.manual_seed(0)
    comb = seg_model('seamless', 'resnet50', **CS).eval()
    if not with_semantic: return comb, None
    torch.manual_seed(1)
    sem = seg_model('seamless', 'resnet50', extra=0, **CS).eval()
    return comb, sem


def _pad(m, x):
    d = m.size_divisor
    return F.pad(x, (0, -x.shape[-1] % d, 0, -x.shape[-2] % d))


def semantic_model(m, x):
    "The semantic FPN model alone: body, FPN P2..P5, Mini-DeepLab head, logits at the input size."
    xp = _pad(m, x)
    seg = F.interpolate(m.head.semantic(m.levels(m.backbone(xp))), size=xp.shape[-2:], mode='bilinear', align_corners=False)
    return seg[..., :x.shape[-2], :x.shape[-1]]


def detection_model(m, x):
    "The Mask R-CNN-like model alone: body, FPN P2..P6, RPN, RoI box and mask heads."
    xp = _pad(m, x)
    ps = m.levels(m.backbone(xp))
    sizes = torch.tensor([list(xp.shape[-2:])] * len(x))
    props, _ = m.head.rpn(ps, sizes)
    return m.head.roi(ps[:4], props, sizes)


def separate(comb, sem, x):
    "Two models and the same fusion: the semantic model's logits, the detection model's instances."
    with torch.no_grad():
        seg = semantic_model(sem, x)
        det = detection_model(comb, x)
        return comb.fuse(det, seg)['panoptic']


def combined(comb, sem, x):
    return comb.inference(x)['panoptic']


CONFIGS = {'combined': combined, 'separate': separate}


def _status(key):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) * 1024
    raise RuntimeError(f'{key} not in /proc/self/status')


def mem_child(cfg, h, w):
    "Runs in a subprocess: resident memory added by building the models of `cfg` and at the peak of one inference."
    x = torch.randn(1, 3, h, w)
    before = _status('VmRSS')
    comb, sem = build(cfg == 'separate')
    weights = _status('VmRSS') - before
    Path('/proc/self/clear_refs').write_text('5')  # reset VmHWM to the current resident size
    with torch.inference_mode(): CONFIGS[cfg](comb, sem, x)
    print(json.dumps(dict(weights=weights, peak=_status('VmHWM') - before)))


def measure_memory(cfg, h, w, threads):
    r = subprocess.run([sys.executable, __file__, '--mem-child', cfg, str(h), str(w), '--threads', str(threads)], capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'memory measurement of {cfg} failed:\n{r.stderr[-2000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--size', type=int, nargs=2, default=(512, 1024))
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--clock', choices=('wall', 'cpu'), default='cpu', help="'cpu': process CPU time; 'wall': elapsed time")
    ap.add_argument('--out', default=str(Path(__file__).parent / 'out' / 'seamless.json'))
    ap.add_argument('--mem-child', nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.mem_child:
        cfg, h, w = a.mem_child
        return mem_child(cfg, int(h), int(w))
    clock = time.process_time if a.clock == 'cpu' else time.perf_counter
    h, w = a.size
    comb, sem = build()
    count = lambda mods: sum(p.numel() for p in {id(p): p for m in mods for p in m.parameters()}.values())
    params = dict(combined=count([comb]), separate=count([comb.backbone, comb.neck, comb.head.rpn, comb.head.roi]) +
                  count([sem.backbone, sem.neck, sem.head.semantic]))
    x = torch.randn(1, 3, h, w)
    with torch.inference_mode():  # warm-up
        combined(comb, sem, x), separate(comb, sem, x)
    n_det = len(comb.inference(x)['boxes'])
    times = {k: [] for k in CONFIGS}
    for i in range(a.repeats):
        for k in (list(CONFIGS)[::-1] if i % 2 else list(CONFIGS)):
            with torch.inference_mode():
                t = clock(); CONFIGS[k](comb, sem, x); times[k].append(clock() - t)
        print(f'repeat {i + 1}/{a.repeats}: ' + ', '.join(f'{k} {v[-1]:.1f} s' for k, v in times.items()), flush=True)
    del comb, sem
    mem = {k: measure_memory(k, h, w, a.threads) for k in CONFIGS}
    ratio = statistics.median(s / c for s, c in zip(times['separate'], times['combined']))
    res = dict(config=dict(size=[h, w], repeats=a.repeats, threads=a.threads, clock=a.clock, torch=torch.__version__, detections=n_det,
                           memory='VmHWM - VmRSS before building the models, one inference, fresh subprocess per config'),
               params=params, paper_params=dict(combined=51.43e6, separate=78.06e6),
               time_s={k: statistics.median(v) for k, v in times.items()}, times=times, time_ratio=ratio,
               weights_mb={k: v['weights'] / 2**20 for k, v in mem.items()}, peak_mb={k: v['peak'] / 2**20 for k, v in mem.items()},
               mem_ratio=mem['separate']['peak'] / mem['combined']['peak'], params_ratio=params['separate'] / params['combined'],
               paper_params_ratio=78.06 / 51.43)
    print(f"\nSeamless combined vs separate models, CPU ({a.threads} thread(s), {a.clock} time), {h}x{w}, batch 1, eval, {n_det} detections")
    print(f"{'':10} {'params':>10} {'time s':>8} {'weights MB':>11} {'peak MB':>8}")
    for k in CONFIGS:
        print(f"{k:10} {params[k] / 1e6:9.2f}M {res['time_s'][k]:8.2f} {res['weights_mb'][k]:11.0f} {res['peak_mb'][k]:8.0f}")
    print(f"separate / combined: params {res['params_ratio']:.3f} (paper {res['paper_params_ratio']:.3f}), time {ratio:.3f}, "
          f"peak memory {res['mem_ratio']:.3f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.tmp')
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, out)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
