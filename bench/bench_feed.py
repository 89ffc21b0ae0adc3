"""The data feed at Cityscapes scale, per worker process: the library's training pipeline against a plain PIL + NumPy
pipeline doing the same work, interleaved in one process on one thread.

Data: a Cityscapes layout in a temporary folder, 2048x1024 PNGs made from the Cityscapes fixture frame (MANIFEST §1):
the 256x128 frame upscaled 8x (bilinear) with uniform noise of +-`--noise` grey levels added so that the PNG is about
as large as a real `leftImg8bit` frame (real: ~2.0-2.5 MB; noise 2 gives ~2.5 MB), its gtFine labelIds and instanceIds
upscaled 8x (nearest: real classes, void labels, 7 person/car instances). Odd-numbered frames are mirrored.

Work per image, both pipelines: decode image + labelIds + instanceIds; labelIds -> train ids, void map, instance map;
random scale 0.5-2 and a 512x1024 crop (padded with ignore where the scaled image is smaller); flip (p=0.5); mmseg's
photometric distortion (each step p=0.5); collation into a batch (bs 2); boundary targets (19 classes, radius 2,
instance-sensitive, void pixels bounding their neighbours) of the batch.

  * library: `seg_dataloaders('cityscapes', targets=('mask','inst','void'), size=(512,1024), device='cpu')`, one
    epoch of its training `DataLoader` (num_workers=0: the work a worker process does), then `boundary_targets` of each
    batch (what the boundary losses compute, per batch on the model's device: a CPU cost only when training on CPU);
  * plain: PIL decode, NumPy LUTs, PIL's bilinear resize of the crop window (`resize(box=...)`), NumPy nearest
    indexing, flip and brightness/contrast, PIL's HSV conversion for saturation/hue, `np.stack`, and the boundary rule
    of `boundary_targets` written in NumPy (checked equal to the library's on the library's own batch).

Time is process CPU time (`time.process_time`, one thread: images per CPU-second = images/s per core, which a loaded
machine barely changes) and wall time; each repetition runs one epoch of each pipeline, alternating which goes first;
medians over the repetitions. Ratio = library images/s per core / plain images/s per core.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python bench/bench_feed.py [-n 5] [--images 16]
    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/old/checkout BOUNDARYSEG_FIXTURES=$PWD/../shared/fixtures \
        .venv/bin/python bench/bench_feed.py   # an earlier library (fixtures: set where the checkout lacks ../shared)
    ... bench/bench_feed.py --profile [-n 0]   # cProfile (CPU time) of one library epoch, top functions by own time

Writes bench/out/feed.json (or --out). Goal: >= 4 images/s per core for the worker's part."""
import argparse, cProfile, io, json, math, os, pstats, statistics, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import boundaryseg
from boundaryseg.core import atomic_write, fixtures_path
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.data.block import seg_dataloaders
from boundaryseg.data.boundaries import boundary_targets, disk_offsets

OUT = Path(__file__).resolve().parent/'out'
STEM = 'frankfurt_000000_000294'
CROP, BS, C, RADIUS = (512, 1024), 2, 19, 2


def build_cityscapes(root, n_train=8, n_val=1, noise=2, seed=0):
    "A Cityscapes layout of 2048x1024 frames made from the fixture frame (see the module docstring)."
    fx, root = fixtures_path()/'cityscapes', Path(root)
    img = Image.open(fx/'leftImg8bit/val/frankfurt'/f'{STEM}_leftImg8bit.png').convert('RGB').resize((2048, 1024), Image.BILINEAR)
    lab = Image.open(fx/'gtFine/val/frankfurt'/f'{STEM}_gtFine_labelIds.png').resize((2048, 1024), Image.NEAREST)
    ins = Image.open(fx/'gtFine/val/frankfurt'/f'{STEM}_gtFine_instanceIds.png').resize((2048, 1024), Image.NEAREST)
    rng = np.random.default_rng(seed)
    base, L, I = np.asarray(img, np.int16), np.asarray(lab), np.asarray(ins).astype(np.uint16)
    for split, n in (('train', n_train), ('val', n_val)):
        d, g = root/'leftImg8bit'/split/'synth', root/'gtFine'/split/'synth'
        d.mkdir(parents=True, exist_ok=True); g.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            f = (lambda a: np.ascontiguousarray(a[:, ::-1])) if i % 2 else (lambda a: a)
            x = np.clip(base + rng.integers(-noise, noise + 1, base.shape), 0, 255).astype(np.uint8)
            name = f'synth_{i:06d}_000019'
            Image.fromarray(f(x)).save(d/f'{name}_leftImg8bit.png')
            Image.fromarray(f(L)).save(g/f'{name}_gtFine_labelIds.png')
            Image.fromarray(f(I)).save(g/f'{name}_gtFine_instanceIds.png')
    return root


# ---------------------------------------------------------------- the plain PIL + NumPy pipeline
LUT, VOID = CITYSCAPES.lut.astype(np.uint8), CITYSCAPES.void_lut
VOID_VALUE = 254  # `boundary_targets`' value of void pixels for 19 classes


def plain_item(it, rng):
    "One training sample (img (h,w,3) uint8, mask, inst, void) of a Cityscapes item, with PIL and NumPy only."
    im = Image.open(it['img']).convert('RGB')
    ids = np.asarray(Image.open(it['mask']))
    raw = np.asarray(Image.open(it['inst'])).astype(np.int32)
    mask, void, inst = LUT[ids], VOID[ids], np.where(raw >= 1000, raw, 0)
    (H0, W0), (ch, cw) = ids.shape, CROP
    r = rng.uniform(0.5, 2.0)
    H, W = int(H0 * r + 0.5), int(W0 * r + 0.5)
    top, left = rng.integers(0, max(H - ch, 0) + 1), rng.integers(0, max(W - cw, 0) + 1)
    h, w = min(ch, H - top), min(cw, W - left)
    box = (left * W0 / W, top * H0 / H, (left + w) * W0 / W, (top + h) * H0 / H)
    img = np.zeros((ch, cw, 3), np.uint8)
    img[:h, :w] = np.asarray(im.resize((w, h), Image.BILINEAR, box=box))
    iy = np.minimum(((np.arange(top, top + h) + 0.5) * H0 / H).astype(np.int64), H0 - 1)
    ix = np.minimum(((np.arange(left, left + w) + 0.5) * W0 / W).astype(np.int64), W0 - 1)
    out = [img]
    for a, fill in ((mask, 255), (inst, 0), (void, False)):
        o = np.full((ch, cw), fill, a.dtype)
        o[:h, :w] = a[iy[:, None], ix[None, :]]
        out.append(o)
    if rng.random() < 0.5: out = [o[:, ::-1] for o in out]
    out[0] = plain_photometric(out[0], rng)
    return out


def plain_photometric(img, rng):
    "mmseg's photometric distortion: brightness, contrast (first or last), saturation and hue (PIL's HSV), each p=0.5."
    conv = lambda x, a=1., b=0.: np.clip(x.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
    if rng.random() < 0.5: img = conv(img, b=rng.uniform(-32, 32))
    first = rng.random() < 0.5
    if first and rng.random() < 0.5: img = conv(img, a=rng.uniform(0.5, 1.5))
    sat = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = int(rng.integers(-18, 19)) if rng.random() < 0.5 else None
    if sat is not None or hue is not None:
        hsv = np.array(Image.fromarray(np.ascontiguousarray(img)).convert('HSV'))
        if sat is not None: hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255).astype(np.uint8)
        if hue is not None: hsv[..., 0] += np.uint8(round(hue * 256 / 180) % 256)
        img = np.asarray(Image.fromarray(hsv, 'HSV').convert('RGB'))
    if not first and rng.random() < 0.5: img = conv(img, a=rng.uniform(0.5, 1.5))
    return img


def plain_boundaries(mask, inst, void, n_classes=C, radius=RADIUS, ignore=255):
    "The rule of `boundary_targets` (instance-sensitive, void bounding) in NumPy: (B,K,H,W) uint8."
    L = np.where(void, VOID_VALUE, mask).astype(np.int64)
    key = (L << 32) | (inst.astype(np.int64) & 0xFFFFFFFF)
    B, H, W = L.shape
    P = int(math.floor(radius + 1e-9))
    Lp = np.pad(L, ((0, 0), (P, P), (P, P)), constant_values=ignore)
    Kp = np.pad(key, ((0, 0), (P, P), (P, P)))
    at = lambda t, o: t[:, P + o[0]:P + o[0] + H, P + o[1]:P + o[1] + W]
    out = np.zeros((B, n_classes, H, W), np.uint8)
    def emit(cond, lab):
        cond = cond & (lab != VOID_VALUE)
        b, y, x = np.nonzero(cond)
        out[b, lab[b, y, x], y, x] = 1
    ok = L != ignore
    seen = np.zeros_like(ok)
    offs = disk_offsets(radius)
    for o in offs:
        d = ok & (at(Lp, o) != ignore) & (at(Kp, o) != key)
        seen |= d
        emit(d, at(Lp, o))
    emit(seen, L)
    if ok.all(): return out
    norm = {o: math.hypot(*o) for o in offs}
    for d1 in sorted(set(norm.values())):  # ignored pixels next to a boundary between two labels within the radius
        if d1 + 1 > radius + 1e-9: break
        near = [at(Kp, o)[None] for o, n in norm.items() if d1 + n <= radius + 1e-9]
        valid = [(at(Lp, o) != ignore)[None] for o, n in norm.items() if d1 + n <= radius + 1e-9]
        Kn, V = np.concatenate(near), np.concatenate(valid)
        big = np.iinfo(np.int64)
        kmin, kmax = np.where(V, Kn, big.max).min(0), np.where(V, Kn, big.min).max(0)
        for o, n in norm.items():
            if abs(n - d1) < 1e-9:
                La, Ka = at(Lp, o), at(Kp, o)
                emit(~ok & (La != ignore) & (kmin <= kmax) & ((kmin != kmax) | (kmin != Ka)), La)
    return out


def plain_epoch(items, seed):
    "One epoch of the plain pipeline: shuffled items, batches of `BS`; returns the number of images."
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    n = 0
    for i in range(0, len(order) - BS + 1, BS):
        samples = [plain_item(items[j], rng) for j in order[i:i + BS]]
        img, mask, inst, void = (np.stack(f) for f in zip(*samples))
        x = torch.from_numpy(img).permute(0, 3, 1, 2)
        plain_boundaries(mask, inst, void)
        n += len(x)
    return n


# ---------------------------------------------------------------- the library's pipeline
def lib_epoch(dl, bt=True):
    "One epoch of the library's training DataLoader (+ the batch's boundary targets when `bt`); returns #images."
    n = 0
    for img, mask, inst, void in dl:
        if bt: boundary_targets(mask, C, inst, void, RADIUS)
        n += len(img)
    return n


def timed(f):
    c, w = time.process_time(), time.perf_counter()
    n = f()
    return n, time.process_time() - c, time.perf_counter() - w


def check_plain_boundaries(dl):
    "The plain NumPy boundary rule gives the library's targets on one of the library's batches."
    img, mask, inst, void = next(iter(dl))
    lib = boundary_targets(mask, C, inst, void, RADIUS).numpy()
    pl = plain_boundaries(mask.numpy(), inst.numpy(), void.numpy())
    return bool(np.array_equal(lib, pl)), int(lib.sum())


def main(n=5, images=16, noise=2, profile=False, out=None):
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = build_cityscapes(tmp, images, 1, noise)
        png_mb = statistics.mean(p.stat().st_size for p in (root/'leftImg8bit'/'train').rglob('*.png')) / 2**20
        dls = seg_dataloaders('cityscapes', root, size=CROP, bs=BS, targets=('mask', 'inst', 'void'), seed=0, device='cpu')
        dl, items = dls.train, dls.train.dataset.reader.items
        same, nb = check_plain_boundaries(dl)
        if profile:
            pr = cProfile.Profile(time.process_time); pr.enable(); lib_epoch(dl); pr.disable()
            s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats('tottime').print_stats(30); print(s.getvalue())
            if n == 0: return
        runs = {k: [] for k in ('lib', 'lib_worker', 'plain')}
        lib_epoch(dl); plain_epoch(items, 0)  # warm-up
        for r in range(n):
            jobs = [('lib', lambda: lib_epoch(dl)), ('lib_worker', lambda: lib_epoch(dl, bt=False)), ('plain', lambda: plain_epoch(items, 0))]
            for k, f in (jobs if r % 2 == 0 else jobs[::-1]): runs[k].append(timed(f))
    med = lambda k, j: statistics.median(x[j] for x in runs[k])
    res = {k: dict(images=runs[k][0][0], cpu_s=round(med(k, 1), 3), wall_s=round(med(k, 2), 3),
                   img_per_cpu_s=round(runs[k][0][0] / med(k, 1), 2), img_per_wall_s=round(runs[k][0][0] / med(k, 2), 2)) for k in runs}
    bt_cpu = med('lib', 1) - med('lib_worker', 1)
    info = dict(library=str(Path(boundaryseg.__file__).parent), torch=torch.__version__, threads=torch.get_num_threads(),
                repeats=n, images_per_epoch=images, batch=BS, crop=CROP, png_mb=round(png_mb, 2), load=os.getloadavg(),
                plain_boundaries_equal_library=same, boundary_pixels_checked=nb,
                boundary_targets_cpu_s_per_image=round(bt_cpu / images, 4),
                ratio_lib_vs_plain=round(res['lib']['img_per_cpu_s'] / res['plain']['img_per_cpu_s'], 2),
                ratio_lib_worker_vs_plain=round(res['lib_worker']['img_per_cpu_s'] / res['plain']['img_per_cpu_s'], 2), **res)
    print(json.dumps(info, indent=1))
    out = Path(out) if out else OUT/'feed.json'
    with atomic_write(out, 'w') as f: f.write(json.dumps(info, indent=1))
    return info


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('-n', type=int, default=5, help='repetitions (medians)')
    ap.add_argument('--images', type=int, default=16, help='images per epoch')
    ap.add_argument('--noise', type=int, default=2, help='noise added to the upscaled frame (PNG size)')
    ap.add_argument('--profile', action='store_true', help="print a cProfile of one library epoch")
    ap.add_argument('--out', default=None, help='JSON output (default bench/out/feed.json)')
    a = ap.parse_args()
    main(a.n, a.images, a.noise, a.profile, a.out)
