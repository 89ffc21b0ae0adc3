"""RPCNet-R101 vs DeepLabV3-R101 (output stride 8): forward time on CPU in one process, same input (batch 1, eval mode,
inference mode), runs interleaved in pairs (rpcnet, deeplabv3, deeplabv3, rpcnet, ...); the ratio is the median of the
per-pair ratios. One thread and process CPU time by default, which stay steady when other jobs share the machine.

    .venv/bin/python bench/bench_rpcnet.py                  # 512x1024, 3 pairs, a few minutes on one thread
    .venv/bin/python bench/bench_rpcnet.py --size 1024 2048 -n 2

Both models are the library's (`seg_model('rpcnet', 'resnet101')` with its defaults: C = 256, S = 8, G = {1,3,5,7};
`seg_model('deeplabv3', 'resnet101', aux=False)`: mmseg's ASPP head on a dilated ResNet-101 at output stride 8, the
baseline of SBCB's tables), random weights. Writes bench/out/rpcnet_speed.json."""
import argparse, json, statistics, sys, time
from pathlib import Path
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from boundaryseg.core import atomic_write  # noqa: E402
from boundaryseg.models.zoo import seg_model  # noqa: E402


def timed(m, x, clock):
    with torch.inference_mode():
        t = clock(); m(x); return clock() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--size', type=int, nargs=2, default=[512, 1024])
    ap.add_argument('-n', type=int, default=3, help='pairs')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--clock', choices=('cpu', 'wall'), default='cpu')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    clock = time.process_time if a.clock == 'cpu' else time.perf_counter
    models = {'rpcnet': seg_model('rpcnet', 'resnet101', n_classes=19).eval(),
              'deeplabv3': seg_model('deeplabv3', 'resnet101', n_classes=19, aux=False).eval()}
    x = torch.randn(1, 3, *a.size)
    for m in models.values(): timed(m, x, clock)  # warm-up
    pairs = []
    for i in range(a.n):
        order = ('rpcnet', 'deeplabv3') if i % 2 == 0 else ('deeplabv3', 'rpcnet')
        t = {k: timed(models[k], x, clock) for k in order}
        pairs.append(t)
        print(f"pair {i}: rpcnet {t['rpcnet']:.2f}s  deeplabv3 {t['deeplabv3']:.2f}s  ratio {t['rpcnet'] / t['deeplabv3']:.3f}", flush=True)
    res = dict(size=a.size, threads=a.threads, clock=a.clock, pairs=pairs,
               rpcnet_s=statistics.median(p['rpcnet'] for p in pairs), deeplabv3_s=statistics.median(p['deeplabv3'] for p in pairs),
               ratio=statistics.median(p['rpcnet'] / p['deeplabv3'] for p in pairs),
               params={k: sum(p.numel() for p in m.parameters()) for k, m in models.items()})
    print(f"RPCNet / DeepLabV3 forward time at {a.size[0]}x{a.size[1]}: {res['ratio']:.3f} (median of {a.n} pairs)")
    (HERE/'out').mkdir(exist_ok=True)
    with atomic_write(HERE/'out'/'rpcnet_speed.json', 'w') as f: json.dump(res, f, indent=1)


if __name__ == '__main__':
    main()
