#!/usr/bin/env python
"""Our models against reference implementations of the same architecture: forward time on CPU, same process,
same input (512x512, batch 1, eval mode, inference mode), runs interleaved in pairs (ours, ref, ref, ours, ...);
the ratio is the median of the N per-pair ratios. By default one thread and process CPU time, which stay steady when
other jobs share the machine (--threads 2 --clock wall for elapsed time on all cores).

  * DeepLabV3 ResNet-50 vs torchvision's `deeplabv3_resnet50(weights=None, weights_backbone=None)`: our
    `seg_model('deeplabv3', 'resnet50', ch=256, proj_ks=1, n_convs=1)` is the same network (tests/test_models.py
    shows equal outputs with equal weights), output stride 8.
  * DeepLabV3+ ResNet-50 vs segmentation_models_pytorch's `DeepLabV3Plus(encoder_name='resnet50')` with its
    defaults (output stride 16, 256 channels, rates 12/24/36, separable ASPP, 1x1 projection, one separable conv
    after the ASPP, one separable decoder conv): ours configured alike. The remaining differences are smp's
    separable convs having no BN+ReLU between depthwise and pointwise, and its upsampling by a fixed factor.
    smp's `make_dilated` also sets dilation 2 on the 1x1 convs of the dilated stage (no effect on the output). PyTorch's
    CPU backend then runs those 1x1 convs with another kernel, about 2x faster at 32x32 with 1024-2048 channels on one
    thread here (torch 2.14): that alone makes smp ~15% faster. `--mark-1x1` marks ours the same way, to show it.
    segmentation_models_pytorch is not a boundaryseg dependency; install it to run this part:
        pip install segmentation-models-pytorch
    (the part is skipped with a message when it is missing).

Writes bench/out/vs_refs.json and prints a table; target: time ratio ours/ref <= 1.05.

    python bench/bench_vs_refs.py            # N=5, about a minute and a half
    python bench/bench_vs_refs.py -n 15
"""
import argparse, json, os, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from boundaryseg.models.zoo import seg_model  # noqa: E402


def n_params(m): return sum(p.numel() for p in m.parameters())


def gflops(m, x):
    from fvcore.nn import FlopCountAnalysis
    with torch.no_grad():
        return FlopCountAnalysis(m, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False).total() / 1e9


def mark_1x1_dilated(model, stage='layer4', dilation=(2, 2)):
    "Give the 1x1 convs of a dilated backbone stage a (no-op) dilation, as smp's `make_dilated` does."
    for m in getattr(model.backbone.body, stage).modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1): m.dilation = dilation


def pairs():
    "Yield (name, ours, ref, ref output key) for the references that are installed."
    from torchvision.models.segmentation import deeplabv3_resnet50
    yield ('DeepLabV3 R50 OS8 vs torchvision', seg_model('deeplabv3', 'resnet50', n_classes=21, aux=False, ch=256, proj_ks=1, n_convs=1),
           deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21), 'out')
    try: import segmentation_models_pytorch as smp
    except ImportError:
        print('segmentation_models_pytorch is not installed: skipping DeepLabV3+ vs smp (pip install segmentation-models-pytorch)')
        return
    yield ('DeepLabV3+ R50 OS16 vs smp', seg_model('deeplabv3plus', 'resnet50', n_classes=19, output_stride=16, aux=False, ch=256,
                                                   rates=(12, 24, 36), sep=True, proj_ks=1, n_convs=1, n_dec=1),
           smp.DeepLabV3Plus(encoder_name='resnet50', encoder_weights=None, encoder_output_stride=16, classes=19), None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('-n', '--repeats', type=int, default=5)
    ap.add_argument('--size', type=int, default=512)
    # one thread and process CPU time by default: on a machine shared with other jobs, multi-threaded wall time swings by 2x
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--clock', choices=('wall', 'cpu'), default='cpu', help="'cpu': process CPU time; 'wall': elapsed time")
    ap.add_argument('--mark-1x1', action='store_true', help="mark our dilated stage's 1x1 convs as dilated, as smp does")
    ap.add_argument('--out', default=str(Path(__file__).parent / 'out' / 'vs_refs.json'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    clock = time.process_time if a.clock == 'cpu' else time.perf_counter
    x = torch.randn(1, 3, a.size, a.size)
    rows = []
    for name, ours, ref, key in pairs():
        ours.eval(); ref.eval()
        if a.mark_1x1 and 'smp' in name: mark_1x1_dilated(ours); name += ' (1x1 marked)'
        fwd = {'ours': lambda: ours(x)['seg'], 'ref': (lambda: ref(x)[key]) if key else (lambda: ref(x))}
        times = {'ours': [], 'ref': []}
        with torch.inference_mode():
            test = {k: f() for k, f in fwd.items()}  # warm-up, and both produce the same shape
            assert test['ours'].shape == test['ref'].shape, (test['ours'].shape, test['ref'].shape)
            for i in range(a.repeats):
                for k, f in (list(fwd.items())[::-1] if i % 2 else fwd.items()):
                    t = clock(); f(); times[k].append(clock() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        # median of the per-pair ratios: robust to a load that drifts over the run (the machine is shared)
        ratio = statistics.median(o / f for o, f in zip(times["ours"], times["ref"]))
        r = dict(name=name, ours_s=med['ours'], ref_s=med['ref'], ratio=ratio,
                 ours_params=n_params(ours), ref_params=n_params(ref), ours_gflops=gflops(ours, x),
                 ref_gflops=gflops(ref, x),
                 times=times)
        rows.append(r)
        print(f"{name}: ours {r['ours_s']:.3f} s, ref {r['ref_s']:.3f} s, ratio {r['ratio']:.3f}", flush=True)
    print(f"\nours vs reference, CPU ({a.threads} threads, {a.clock} time), {a.size}x{a.size} batch 1 eval, "
          f"median of {a.repeats} interleaved runs (ratio: median of per-pair ratios)")
    print(f"{'model':34} {'ours s':>7} {'ref s':>7} {'ratio':>6} {'params ours':>12} {'params ref':>11} {'GF ours':>8} {'GF ref':>7}")
    for r in rows:
        print(f"{r['name']:34} {r['ours_s']:7.3f} {r['ref_s']:7.3f} {r['ratio']:6.3f} {r['ours_params']:12,d} {r['ref_params']:11,d} "
              f"{r['ours_gflops']:8.1f} {r['ref_gflops']:7.1f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.tmp')
    tmp.write_text(json.dumps(dict(config=dict(size=a.size, repeats=a.repeats, threads=a.threads, clock=a.clock, mark_1x1=a.mark_1x1, torch=torch.__version__), rows=rows), indent=1))
    os.replace(tmp, out)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
