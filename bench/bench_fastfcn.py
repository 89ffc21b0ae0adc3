#!/usr/bin/env python
"""FastFCN (head + JPU on an output-stride-32 ResNet) vs DilatedFCN (the same head on an output-stride-8 ResNet), for
the EncNet, ASPP and PSP heads on ResNet-50 and ResNet-101: the ratios of FastFCN's Table 2, measured on this CPU.

Per configuration (one process, CPU, batch 1, 512x512, eval mode; by default one thread and process CPU time, which
stay steady when other jobs share the machine; --threads 2 --clock wall for elapsed time on all cores):
  * forward time: the runs of all configurations are interleaved (one forward of each, repeated, the dilated and JPU
    arms of a pair back to back); the time ratio is the median of the per-repeat ratios;
  * FLOPs: fvcore's FlopCountAnalysis (one fused multiply-add = one FLOP), whose trace also serves as the warm-up;
  * peak memory of one training step (forward, losses on seg/aux/se, backward; no optimizer state): each
    configuration runs in a fresh subprocess that builds the model, resets the kernel's resident-memory high-water
    mark (`/proc/self/clear_refs`), runs the step and reads `VmHWM - VmRSS(before)` from `/proc/self/status`, i.e.
    the resident memory the step added at its peak (activations, gradients, temporaries). Python's tracemalloc cannot
    see torch's allocations and torch has no CPU peak counter; this is what the OS measures. Batch 2 (BatchNorm after
    global pooling needs more than one value per channel in training), 256x256 by default (--mem-size 512 for the
    paper's size). At 256x256 the gradients (the same in both arms) are a large share of the peak, so the ratio is
    smaller than at 512x512 (PSP R101: 1.38 at 256, 1.56 at 512).

The models follow FastFCN's public code: the 64-64-128 deep-stem ResNets (timm `resnet50s`/`resnet101s`, its
`deep_base`), EncNet head with 32 codewords (+SE branch, 1x1 input conv after the JPU), DeepLabV3 head with 256
channels, a 1x1 projection and one 3x3 conv, PSP head with 512 channels; 59 classes (Pascal Context); FCN auxiliary head.

    python bench/bench_fastfcn.py            # ~4-5 min on an idle 2-core machine: 3 timed repeats, memory at 256x256
    python bench/bench_fastfcn.py --full     # 10 repeats, memory at 512x512
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from boundaryseg.models.zoo import seg_model  # noqa: E402

HEADS = {'encnet': {}, 'deeplabv3': dict(ch=256, proj_ks=1, n_convs=1), 'psp': {}}
HEAD_NAMES = {'encnet': 'EncNet', 'deeplabv3': 'ASPP', 'psp': 'PSP'}
BACKBONES = {'R50': 'resnet50s', 'R101': 'resnet101s'}
ARMS = {'dilated': dict(output_stride=8), 'jpu': dict(neck='jpu', output_stride=32)}
# FastFCN Table 2: FPS on a Titan-Xp, 512x512, (dilated "None", JPU)
PAPER_FPS = {('encnet', 'R50'): (18.77, 37.56), ('deeplabv3', 'R50'): (15.99, 20.67), ('psp', 'R50'): (18.08, 28.48),
             ('encnet', 'R101'): (10.51, 32.02), ('deeplabv3', 'R101'): (10.46, 18.08), ('psp', 'R101'): (11.36, 23.87)}
N_CLASSES = 59


def build(head, bb, arm):
    return seg_model(head, BACKBONES[bb], n_classes=N_CLASSES, aux=True, **HEADS[head], **ARMS[arm])


def _status(key):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) * 1024
    raise RuntimeError(f'{key} not in /proc/self/status')


def mem_child(head, bb, arm, size, batch):
    "Runs in a subprocess: peak resident memory added by one training step, in bytes."
    torch.manual_seed(0)
    m = build(head, bb, arm).train()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, N_CLASSES, (batch, size, size))
    Path('/proc/self/clear_refs').write_text('5')  # reset VmHWM to the current resident size
    before = _status('VmRSS')
    out = m(x)
    ce = torch.nn.functional.cross_entropy
    loss = ce(out['seg'], y) + 0.4 * ce(out['aux'], y)
    if 'se' in out: loss = loss + 0.2 * torch.nn.functional.binary_cross_entropy_with_logits(out['se'], torch.ones_like(out['se']))
    loss.backward()
    print(json.dumps(dict(peak=_status('VmHWM') - before)))


def measure_memory(head, bb, arm, size, batch, threads):
    r = subprocess.run([sys.executable, __file__, '--mem-child', head, bb, arm, str(size), str(batch), '--threads', str(threads)],
                       capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'memory measurement of {head}/{bb}/{arm} failed:\n{r.stderr[-2000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])['peak']


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--size', type=int, default=512)
    ap.add_argument('--mem-size', type=int, default=256)
    ap.add_argument('--mem-batch', type=int, default=2)
    ap.add_argument('--backbones', nargs='+', default=list(BACKBONES), choices=list(BACKBONES))
    ap.add_argument('--heads', nargs='+', default=list(HEADS), choices=list(HEADS))
    # one thread and process CPU time by default: on a machine shared with other jobs, multi-threaded wall time swings by 2x
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--clock', choices=('wall', 'cpu'), default='cpu', help="'cpu': process CPU time; 'wall': elapsed time")
    ap.add_argument('--full', action='store_true', help='10 repeats and memory at 512x512')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'out' / 'fastfcn.json'))
    ap.add_argument('--mem-child', nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    clock = time.process_time if a.clock == 'cpu' else time.perf_counter
    if a.mem_child:
        h, bb, arm, size, batch = a.mem_child
        return mem_child(h, bb, arm, int(size), int(batch))
    if a.full: a.repeats, a.mem_size = max(a.repeats, 10), 512
    from fvcore.nn import FlopCountAnalysis

    keys = [(h, bb, arm) for bb in a.backbones for h in a.heads for arm in ARMS]
    x = torch.randn(1, 3, a.size, a.size)
    models, res = {}, {}
    for k in keys:
        torch.manual_seed(0)
        m = models[k] = build(*k).eval()
        with torch.no_grad():
            fa = FlopCountAnalysis(m, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            fl, by = fa.total(), fa.by_module()
        res[k] = dict(params=sum(p.numel() for p in m.parameters()) - sum(p.numel() for p in m.train_heads.parameters()),
                      gflops=fl / 1e9, body_gflops=(by['backbone'] + by.get('neck', 0)) / 1e9, times=[])
        print(f'{k}: {fl / 1e9:.1f} GFLOPs, backbone(+JPU) {res[k]["body_gflops"]:.1f}', flush=True)
    for i in range(a.repeats):
        for k in keys[::-1] if i % 2 else keys:  # the two arms of a pair run back to back, in alternating order
            with torch.inference_mode():
                t = clock(); models[k](x); res[k]['times'].append(clock() - t)
        print(f'repeat {i + 1}/{a.repeats} done', flush=True)
    del models
    for k in keys:
        res[k]['time_s'] = statistics.median(res[k]['times'])
        res[k]['train_peak_mb'] = measure_memory(*k, a.mem_size, a.mem_batch, a.threads) / 2**20
        print(f'{k}: {res[k]["time_s"]:.2f} s, train step peak {res[k]["train_peak_mb"]:.0f} MB', flush=True)

    rows = []
    for bb in a.backbones:
        for h in a.heads:
            d, j = res[(h, bb, 'dilated')], res[(h, bb, 'jpu')]
            fps = PAPER_FPS[(h, bb)]
            # median of the per-repeat ratios: robust to a load that drifts over the run (the machine is shared)
            ratio = statistics.median(td / tj for td, tj in zip(d['times'], j['times']))
            rows.append(dict(head=HEAD_NAMES[h], backbone=bb, time_ratio=ratio, paper_time_ratio=fps[1] / fps[0],
                             flops_ratio=d['gflops'] / j['gflops'], body_flops_ratio=d['body_gflops'] / j['body_gflops'],
                             mem_ratio=d['train_peak_mb'] / j['train_peak_mb'],
                             **{arm: {f: r[f] for f in ('time_s', 'gflops', 'body_gflops', 'train_peak_mb', 'params')} for arm, r in (('dilated', d), ('jpu', j))}))
    hdr = (f"{'head':7} {'bb':5} {'t dil s':>8} {'t jpu s':>8} {'time x':>7} {'paper x':>8} {'GF dil':>7} {'GF jpu':>7} {'FLOP x':>7} "
           f"{'body x':>7} {'MB dil':>7} {'MB jpu':>7} {'mem x':>6}")
    print(f'\nFastFCN vs DilatedFCN, CPU ({a.threads} threads, {a.clock} time), {a.size}x{a.size} batch 1 eval; memory: one training step '
          f'{a.mem_size}x{a.mem_size} batch {a.mem_batch}; median of {a.repeats}\n' + hdr)
    for r in rows:
        d, j = r['dilated'], r['jpu']
        print(f"{r['head']:7} {r['backbone']:5} {d['time_s']:8.2f} {j['time_s']:8.2f} {r['time_ratio']:7.2f} {r['paper_time_ratio']:8.2f} "
              f"{d['gflops']:7.1f} {j['gflops']:7.1f} {r['flops_ratio']:7.2f} {r['body_flops_ratio']:7.2f} {d['train_peak_mb']:7.0f} {j['train_peak_mb']:7.0f} {r['mem_ratio']:6.2f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = dict(size=a.size, repeats=a.repeats, mem_size=a.mem_size, mem_batch=a.mem_batch, threads=a.threads, clock=a.clock, n_classes=N_CLASSES,
               torch=torch.__version__, flops='fvcore FlopCountAnalysis (1 multiply-add = 1 FLOP)',
               memory='VmHWM - VmRSS added by one training step (fwd + losses + bwd), fresh subprocess per config')
    tmp = out.with_suffix('.tmp')
    tmp.write_text(json.dumps(dict(config=cfg, rows=rows), indent=1))
    os.replace(tmp, out)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
