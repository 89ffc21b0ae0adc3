"""Seconds per training step of the main job's models, as the main job runs them: `boundaryseg main --config fast`
(DeepLabV3+ width 64 on an ImageNet tf_efficientnet_lite0, output stride 32, CASENet boundary head, channels-last) against
`--config long` (the previous job: width-128 FastFCN-PSP on ResNet-18 with its auxiliary head), in one process so
that the ratio holds on a busy machine. Each step is what `learn.fit` runs: forward, the architecture's full loss
(segmentation + boundary terms, class weights), backward and the AdamW step, in the precision the recipe resolves to
on this machine, with `learner.CPUAutocast`'s guard of depthwise dilated convolutions under bf16 (`mixed_precision='auto'`: bf16 autocast on CPUs with native bfloat16, else fp32; `--precision both` times
fp32 and bf16 side by side). Each model runs its recipe's batch (fast: 4, long: 8), so the ratio is also given per image. Also times one training batch of the
data pipeline (synthetic images, augmentation, boundary targets) when --data is given.

    .venv/bin/python bench/bench_step.py [--threads 2] [--steps 4] [--data data/synthetic]
    .venv/bin/python bench/bench_step.py --configs fast --compile   # eager vs torch.compile (inductor) for the fast model
    .venv/bin/python bench/bench_step.py --backbones tf_efficientnet_lite0,tf_efficientnet_lite1,tf_efficientnet_lite2 --steps 8
    .venv/bin/python bench/bench_step.py --fuse                       # the CASENet fuse alone: GroupedFuse vs the grouped conv
    .venv/bin/python bench/bench_step.py --lovasz --steps 8           # the job's step with and without a Lovasz-softmax term
"""
import argparse, time, warnings
import torch

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--steps', type=int, default=4, help='timed steps per model (after one warm-up step)')
ap.add_argument('--data', default=None, help='a synthetic dataset folder: also time the data pipeline per batch')
ap.add_argument('--configs', default='fast,long')
ap.add_argument('--compile', action='store_true', help="also time the fast model under torch.compile (inductor, CPU): compile time and seconds per step beside eager, same process")
ap.add_argument('--fuse', action='store_true', help="only time the CASENet fuse (layers.GroupedFuse) against the grouped 1x1 conv of the sliced concatenation it stands for, at the main job's shapes")
ap.add_argument('--backbones', default=None, help="only time the fast model with each of these timm backbones (comma-separated), their steps alternated in one process; ratios against the first")
ap.add_argument('--precision', default='auto', help="auto (what the main job runs: the recipe's mixed_precision on this CPU), fp32, bf16, or both (fp32 and bf16)")
ap.add_argument('--lovasz', action='store_true', help="only time the fast model's step with and without the Lovasz-softmax term of experiments/main_job_tuning.py's 'lovasz1' arm, alternated in one process")
a = ap.parse_args()
warnings.filterwarnings('ignore')
torch.set_num_threads(a.threads)
from boundaryseg.cli.main_job import MAIN_CONFIGS
from boundaryseg.recipes import get_recipe
from boundaryseg.models.zoo import seg_model, arch_spec
from boundaryseg.losses import seg_loss
from boundaryseg.learner import _mixed_precision, CPUAutocast
from boundaryseg.data.boundaries import boundary_targets

def batch(rec, n_classes=19, seed=0):
    "A batch of the recipe's size: images and masks of random blobs (the loss sees real boundaries)."
    g = torch.Generator().manual_seed(seed)
    h, w = rec.crop
    x = torch.randn(rec.bs, 3, h, w, generator=g)
    low = torch.randint(0, n_classes, (rec.bs, 1, h // 16, w // 16), generator=g).float()
    y = torch.nn.functional.interpolate(low, size=(h, w), mode='nearest')[:, 0].long()
    return x, y

def time_fuse(reps=7):
    "Forward + backward of the main job's CASENet fuse (K=19, n=4, its batch at full crop size): GroupedFuse vs conv(sliced_concat)."
    from boundaryseg.models.layers import GroupedFuse, sliced_concat
    rec = get_recipe(MAIN_CONFIGS['fast']['recipe'])
    amp = bool(_mixed_precision(rec.mixed_precision)) if a.precision == 'auto' else a.precision == 'bf16'
    f, (h, w) = GroupedFuse(19, 4), rec.crop
    maps = [torch.randn(rec.bs, k, h, w).contiguous(memory_format=torch.channels_last).requires_grad_() for k in (19, 1, 1, 1)]
    arms = {'conv(sliced_concat)': lambda: f.conv(sliced_concat(maps)), 'GroupedFuse': lambda: f(maps)}
    ts = {k: [] for k in arms}
    for _ in range(reps):
        for k, fn in arms.items():  # alternated, so both see the same machine
            t = time.time()
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp): o = fn()
            o.float().square().mean().backward()
            ts[k].append(time.time() - t)
    med = {k: sorted(v)[len(v) // 2] for k, v in ts.items()}
    print(f"CASENet fuse, {rec.bs}x(19+3)x{h}x{w}, {'bf16 autocast' if amp else 'fp32'}, forward+backward, median of {reps}: "
          + ', '.join(f"{k} {v * 1e3:.1f} ms" for k, v in med.items()) + f"; ratio {med['conv(sliced_concat)'] / med['GroupedFuse']:.2f}x")

def build(cfg, backbone=None):
    "The main-job model of config `cfg` (optionally on another backbone) in channels-last, its loss and its AdamW, as the job trains them."
    rec, spec = get_recipe(cfg['recipe']), arch_spec(cfg['arch'])
    mk = dict(rec.model_kw, boundary_head='casenet')
    if 'aux' in spec.outputs: mk['aux'] = rec.aux
    m = seg_model(cfg['arch'], backbone or cfg['backbone'], n_classes=19, **mk).train().to(memory_format=torch.channels_last)
    weights = {**({'aux': 0} if not rec.aux and 'aux' in spec.losses else {}), **rec.loss_weights}
    return m, seg_loss(m.spec, 19, weights=weights, **rec.loss_kw), torch.optim.AdamW(m.parameters(), lr=rec.lr, weight_decay=rec.wd)

def train_step(m, loss, opt, x, y, amp):
    "One training step; its seconds."
    t = time.time()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp): out = m(x)
    loss(out, y).backward(); opt.step(); opt.zero_grad()
    return time.time() - t

def time_backbones(names):
    "Seconds per training step of the fast model (its recipe's batch, channels-last) with each backbone, steps alternated."
    cfg = MAIN_CONFIGS['fast']
    rec = get_recipe(cfg['recipe'])
    amp = bool(_mixed_precision(rec.mixed_precision)) if a.precision == 'auto' else a.precision == 'bf16'
    x, y = batch(rec)
    runs = {n: build(cfg, n) for n in names}
    if amp:
        for m, *_ in runs.values(): CPUAutocast().hook(m)
    ts = {n: [] for n in names}
    for i in range(a.steps + 1):
        for n, r in runs.items():  # alternated, so every backbone sees the same machine
            t = train_step(*r, x, y, amp)
            if i: ts[n].append(t)
    med = {n: sorted(v)[len(v) // 2] for n, v in ts.items()}
    for n, s in med.items():
        print(f"fast {cfg['arch']}/{n} bs {rec.bs} {rec.crop[0]}x{rec.crop[1]} {'bf16 autocast' if amp else 'fp32'}: median {s:.3f} s per step "
              f"({', '.join(f'{t:.2f}' for t in ts[n])}); {s / med[names[0]]:.2f}x {names[0]}; "
              f"{sum(p.numel() for p in runs[n][0].parameters()) / 1e6:.1f}M parameters", flush=True)

def time_lovasz():
    "Seconds per training step of the fast model, and of the same step with the 'lovasz1' arm's term added (weight 1), alternated."
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'experiments'))
    from main_job_tuning import lovasz_softmax
    cfg = MAIN_CONFIGS['fast']
    rec = get_recipe(cfg['recipe'])
    x, y = batch(rec)
    m, loss, opt = build(cfg)
    plus = lambda out, y: loss(out, y) + lovasz_softmax(out['seg'], y, loss.ignore_index)
    ts = {'job': [], '+ Lovasz-softmax': []}
    for i in range(a.steps + 1):
        for k, fn in (('job', loss), ('+ Lovasz-softmax', plus)):  # alternated, so both see the same machine
            t = train_step(m, fn, opt, x, y, False)
            if i: ts[k].append(t)
    med = {k: sorted(v)[len(v) // 2] for k, v in ts.items()}
    for k, s in med.items(): print(f"fast, fp32, {k}: median {s:.3f} s per step ({', '.join(f'{t:.2f}' for t in ts[k])})")
    print(f"ratio: {med['+ Lovasz-softmax'] / med['job']:.2f}x per step")

if a.lovasz: time_lovasz(); raise SystemExit
if a.fuse: time_fuse(); raise SystemExit
if a.backbones: time_backbones(a.backbones.split(',')); raise SystemExit
res, per_image = {}, {}
precs = ['fp32', 'bf16'] if a.precision == 'both' else [a.precision]
runs = [(n, p) for n in a.configs.split(',') for p in precs]
if a.compile: runs += [('fast+compile', precs[0])]
for name, pr in runs:
    compiled = name.endswith('+compile')
    name = name.split('+')[0]
    cfg = MAIN_CONFIGS[name]
    rec = get_recipe(cfg['recipe'])
    m, loss, opt = build(cfg)
    step_m = torch.compile(m) if compiled else m
    amp = bool(_mixed_precision(rec.mixed_precision)) if pr == 'auto' else pr == 'bf16'
    prec = ('bf16 autocast' if amp else 'fp32') + (' (auto)' if pr == 'auto' else '')
    if amp: CPUAutocast().hook(m)  # as `seg_learner` trains under bf16 autocast: dilated depthwise convolutions checked (`learner.CPUAutocast`)
    x, y = batch(rec)
    ts = [train_step(step_m, loss, opt, x, y, amp) for _ in range(a.steps + 1)]
    s = sorted(ts[1:])[len(ts[1:]) // 2]
    if compiled:
        name = name + '+compile'
        first = ts[0]
        print(f"fast+compile: first step (compilation) {first:.1f} s", flush=True)
    res[name, pr] = s
    per_image[name, pr] = s / rec.bs
    print(f"{name:5s} {cfg['arch']}/{cfg['backbone']} width {rec.model_kw.get('width')} bs {rec.bs} {rec.crop[0]}x{rec.crop[1]} {prec}: "
          f"median {s:.2f} s per step, {s / rec.bs:.3f} s per image ({', '.join(f'{t:.2f}' for t in ts[1:])}); {sum(p.numel() for p in m.parameters()) / 1e6:.1f}M parameters", flush=True)
for pr in precs:
    if ('fast', pr) in res and ('long', pr) in res:
        print(f"ratio long/fast ({pr}): {res['long', pr] / res['fast', pr]:.2f}x per step, {per_image['long', pr] / per_image['fast', pr]:.2f}x per image")
if a.compile and ('fast', precs[0]) in res:
    eager, comp = res['fast', precs[0]], res['fast+compile', precs[0]]
    print(f"torch.compile: eager/compiled {eager / comp:.2f}x per step; the compilation's extra time is repaid after "
          f"{'never' if comp >= eager else round((first - comp) / (eager - comp))} steps")
if a.precision == 'both':
    for n in a.configs.split(','): print(f"{n}: bf16/fp32 {res[n, 'bf16'] / res[n, 'fp32']:.2f}x per step")
if a.data:
    from boundaryseg.data.block import seg_dataloaders
    rec = get_recipe(MAIN_CONFIGS['fast']['recipe'])
    dls = seg_dataloaders('synthetic', a.data, size=rec.crop, bs=rec.bs, seed=0, targets='auto')
    it = iter(dls.train)
    next(it)
    t = time.time()
    for _ in range(3): next(it)
    print(f"data: {(time.time() - t) / 3:.2f} s per training batch (num_workers=0, in the training process)")
