"""MSCI speed, as ratios measured in one process:

1. `rm`: the super-pixel aggregation of MSCI Eq. 3-4 (R and M of all four levels of a 512x512 image at strides 4..32,
   256 channels, about 1,000 SLIC super-pixels) vectorised (`RegionGraph`: one scatter_add, or one index_add of rows for
   channels-last features, and one sparse (A+I) product) against a plain loop over the regions, and the same for the broadcast of [R, M] to the adjacent levels (one gather
   against a loop of assignments); results checked equal. CPU time of this process (the machine is shared).
2. `forward`: the forward pass of MSCI against its FCN baseline (Table 1) on the same backbone and image.
3. `slic`: SLIC per 512x512 image (at the paper's density) against reading it back from the cache.
4. `costs`: the rows of bench/costs_msci.py (parameters and multiply-accumulates at 512x512, ResNet-152).

    .venv/bin/python bench/bench_msci.py                      # all three, ResNet-152 for the forward pass
    .venv/bin/python bench/bench_msci.py --only rm slic       # some of them
    .venv/bin/python bench/bench_msci.py --backbone resnet18  # a quicker forward comparison

Writes (updates) bench/results/msci_speed.json, which the tutorial shows. All times are CPU seconds of this process (`time.process_time`)."""
import argparse, json, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from boundaryseg.data.synthetic import synthetic_scene  # noqa: E402
from boundaryseg.data.superpixels import slic_superpixels, region_adjacency, sp_resize, RegionGraph, SuperpixelCache  # noqa: E402
from boundaryseg.models.zoo import seg_model  # noqa: E402

STRIDES = (4, 8, 16, 32)


def timeit(f, reps):
    "Median CPU time of this process over `reps` calls of f (after one untimed call); CPU time, as the machine is shared."
    f()
    ts = []
    for _ in range(reps):
        t = time.process_time(); f(); ts.append(time.process_time() - t)
    return float(np.median(ts))


def superpixels_1000(img):
    "SLIC super-pixels with at least 1,000 regions (connectivity enforcement merges some, so ask for a few more)."
    n = 1000
    while True:
        sp = slic_superpixels(img, n_segments=n)
        if sp.max() + 1 >= 1000: return sp
        n = int(n * 1.05)


def rm_vectorised(g, feats):
    "R (Eq. 3) and M (Eq. 4) of every level: one index_add and one sparse (A+I) product each."
    return [(r, g.neighbours(r)) for r in (g.pool(f, l) for l, f in enumerate(feats))]


def rm_vectorised_coo(g, feats):
    "The same with M as the product of the COO form of A + I (what `RegionGraph.neighbours` did before it kept a CSR copy)."
    return [(r, torch.sparse.mm(g.adj, r)) for r in (g.pool(f, l) for l, f in enumerate(feats))]


def rm_loop(labs, feats, nbrs):
    "The same by a plain loop over the regions: the sum of each region's cells, then of its neighbours' sums."
    S, out = len(nbrs), []
    for lab, f in zip(labs, feats):
        R = torch.zeros(S, f.shape[1])
        for n in range(S): R[n] = f[0][:, lab == n].sum(1)
        M = torch.zeros_like(R)
        for n in range(S): M[n] = R[n] + R[nbrs[n]].sum(0)
        out.append((R, M))
    return out


def broadcast_vectorised(g, tables, sizes):
    "Each level's [R, M] to the cells of the adjacent levels: one gather each."
    return [g.unpool(t, k) for l, t in enumerate(tables) for k in (l - 1, l + 1) if 0 <= k < len(sizes)]


def broadcast_loop(labs, tables, sizes):
    "The same by a loop over the regions: assign each region's vector to its cells."
    out = []
    for l, t in enumerate(tables):
        for k in (l - 1, l + 1):
            if not 0 <= k < len(sizes): continue
            o = torch.zeros(1, t.shape[1], *sizes[k])
            for n in range(len(t)): o[0][:, labs[k] == n] = t[n][:, None]
            out.append(o)
    return out


def rel_err(a, b): return max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(a, b))


def bench_rm(size=512, C=256, reps=10):
    img, _, _ = synthetic_scene((size, size), seed=0)
    sp = torch.from_numpy(superpixels_1000(img))[None]
    S = int(sp.max()) + 1
    e = region_adjacency(sp[0]).numpy()
    nbrs = [[] for _ in range(S)]
    for i, j in e: nbrs[i].append(j); nbrs[j].append(i)
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, C, size // s, size // s, generator=g) for s in STRIDES]
    sizes = [f.shape[-2:] for f in feats]
    labs = [sp_resize(sp, z, s)[0] for z, s in zip(sizes, STRIDES)]
    with torch.no_grad():
        graph = RegionGraph(sp, sizes, STRIDES)
        vec, ref = rm_vectorised(graph, feats), rm_loop(labs, feats, nbrs)
        err = rel_err([t for p in vec for t in p], [t for p in ref for t in p])
        tables = [torch.cat(p, 1) for p in vec]
        bvec, bref = broadcast_vectorised(graph, tables, sizes), broadcast_loop(labs, tables, sizes)
        berr = rel_err(bvec, bref)
        assert err < 1e-5 and berr == 0, f"vectorised and loop results differ (relative {err}, {berr})"
        t_graph = timeit(lambda: RegionGraph(sp, sizes, STRIDES).adj, reps)
        assert all(torch.equal(a, b) for p, q in zip(rm_vectorised_coo(graph, feats), vec) for a, b in zip(p, q))  # CSR: the same bits
        t_vec = timeit(lambda: rm_vectorised(graph, feats), reps)
        t_coo = timeit(lambda: rm_vectorised_coo(graph, feats), reps)
        feats_cl = [f.contiguous(memory_format=torch.channels_last) for f in feats]
        assert rel_err([t for p in rm_vectorised(graph, feats_cl) for t in p], [t for p in ref for t in p]) < 1e-5
        t_cl = timeit(lambda: rm_vectorised(graph, feats_cl), reps)
        graph_torch = RegionGraph(sp, sizes, STRIDES, kernel='torch')                    # channels-first R by scatter_add
        assert rel_err([t for p in rm_vectorised(graph_torch, feats) for t in p], [t for p in ref for t in p]) < 1e-5
        t_torch = timeit(lambda: rm_vectorised(graph_torch, feats), reps)
        t_loop = timeit(lambda: rm_loop(labs, feats, nbrs), 2)
        tb_vec = timeit(lambda: broadcast_vectorised(graph, tables, sizes), reps)
        tb_loop = timeit(lambda: broadcast_loop(labs, tables, sizes), 2)
    return dict(image=[size, size], superpixels=S, edges=len(e), channels=C, levels=list(STRIDES), max_rel_err=err,
                rm_loop_s=round(t_loop, 4), rm_vectorised_s=round(t_vec, 5), rm_ratio=round(t_loop / t_vec, 1),
                rm_vectorised_coo_s=round(t_coo, 5), rm_ratio_coo=round(t_loop / t_coo, 1),
                rm_vectorised_scatter_s=round(t_torch, 5), rm_ratio_scatter=round(t_loop / t_torch, 1), kernel=graph.kernel,
                rm_vectorised_channels_last_s=round(t_cl, 5), rm_ratio_channels_last=round(t_loop / t_cl, 1),
                broadcast_loop_s=round(tb_loop, 4), broadcast_vectorised_s=round(tb_vec, 5), broadcast_ratio=round(tb_loop / tb_vec, 1),
                graph_build_s=round(t_graph, 5),)


def bench_forward(backbone='resnet152', size=512, reps=2):
    img, _, _ = synthetic_scene((size, size), seed=0)
    sp = torch.from_numpy(slic_superpixels(img))[None]
    x = torch.randn(1, 3, size, size)
    res = dict(backbone=backbone, image=[size, size], superpixels=int(sp.max()) + 1)
    for arch in ('msci', 'msci_no_sp', 'msci_no_cells', 'msci_fcn'):
        m = seg_model(arch, backbone, n_classes=21).eval()
        args = (x, sp) if m.inputs else (x,)
        with torch.no_grad(): res[f'{arch}_s'] = round(timeit(lambda: m(*args), reps), 3)
        del m
    res['ratio_msci_vs_fcn'] = round(res['msci_s'] / res['msci_fcn_s'], 2)
    return res


def bench_slic(size=512, n_img=3):
    tmp = Path(tempfile.mkdtemp())
    from PIL import Image
    paths = []
    for i in range(n_img):
        p = tmp / f'{i}.png'
        Image.fromarray(synthetic_scene((size, size), seed=i)[0]).save(p)
        paths.append(p)
    cache = SuperpixelCache(tmp / 'cache')
    t = time.perf_counter()
    sps = [cache(p) for p in paths]
    t_miss = (time.perf_counter() - t) / n_img
    t = time.perf_counter()
    for p in paths: cache(p)
    t_hit = (time.perf_counter() - t) / n_img
    assert cache.misses == n_img and cache.hits == n_img
    return dict(image=[size, size], superpixels=[int(s.max()) + 1 for s in sps], slic_s_per_image=round(t_miss, 3),
                cache_hit_s_per_image=round(t_hit, 4), ratio=round(t_miss / t_hit, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--only', nargs='*', default=['rm', 'slic', 'forward', 'costs'])
    ap.add_argument('--out', default=str(HERE / 'results' / 'msci_speed.json'))
    ap.add_argument('--backbone', default='resnet152')
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = {}
    if 'rm' in a.only:
        out['rm'] = r = bench_rm()
        print(f"R and M (Eq. 3-4) of 4 levels, {r['superpixels']} super-pixels at 512x512, {r['channels']} channels: loop "
              f"{r['rm_loop_s']:.3f} s, vectorised {r['rm_vectorised_s'] * 1e3:.2f} ms: {r['rm_ratio']}x on NCHW features, "
              f"(M by the COO product as before: {r['rm_vectorised_coo_s'] * 1e3:.2f} ms, {r['rm_ratio_coo']}x), "
              f"{r['rm_vectorised_channels_last_s'] * 1e3:.2f} ms: {r['rm_ratio_channels_last']}x on channels-last features "
              f"(graph {r['graph_build_s'] * 1e3:.2f} ms, built once per batch and used 36 times per forward pass)\n"
              f"broadcast of [R, M] to the adjacent levels: loop {r['broadcast_loop_s']:.3f} s, vectorised "
              f"{r['broadcast_vectorised_s'] * 1e3:.2f} ms: {r['broadcast_ratio']}x", flush=True)
    if 'slic' in a.only:
        out['slic'] = r = bench_slic()
        print(f"SLIC at 512x512 ({r['superpixels']} regions): {r['slic_s_per_image']:.3f} s per image; cached "
              f"{r['cache_hit_s_per_image'] * 1e3:.1f} ms: {r['ratio']}x", flush=True)
    if 'forward' in a.only:
        out['forward'] = r = bench_forward(a.backbone)
        print(f"forward at 512x512 on {a.backbone}: " + ', '.join(f"{k[:-2]} {v:.2f} s" for k, v in r.items() if k.endswith('_s'))
              + f"; MSCI / FCN {r['ratio_msci_vs_fcn']}", flush=True)
    if 'costs' in a.only:
        import bench_costs
        rows = [r for r in bench_costs.load_rows(['msci'])]
        out['costs'] = [bench_costs.measure(r) for r in rows]
        for r in out['costs']: print(f"{r['model']:<46} {r['params'] / 1e6:8.2f}M params {r['gflops']:8.1f} GMAC at 512x512", flush=True)
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**old, **out}, indent=1))  # sections not run this time are kept


if __name__ == '__main__':
    main()
