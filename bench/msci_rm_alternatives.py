"""MSCI R/M aggregation (issue 20 item 3): alternatives to torch's scatter_add on channels-first features (the
library's default is now the compiled run-sum kernel, `RegionGraph(kernel='numba')`; `kernel='torch'` is the scatter), on bench_msci.py's case (512x512, ~1,000 SLIC super-pixels, 256 channels, strides
4..32). Prints CPU ms per call of all four levels (median of 7 or 9, one thread) and the largest difference to the
library's R (and M).

    .venv/bin/python bench/msci_rm_alternatives.py

Prints only; the figures are quoted in `01e_data.superpixels` (R, M and the broadcast). Also: the channels-last path
(`index_add` of rows, now; the CSR product it replaced), the floor of a gather of the same cells in region order, a
numba loop over channels (8 per pass, the scatter's order of sums: equal bits), and M on row-major against
column-major R."""
import sys, time, torch, numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent)); sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_msci import superpixels_1000, STRIDES, timeit
from boundaryseg.data.synthetic import synthetic_scene
from boundaryseg.data.superpixels import RegionGraph
torch.set_num_threads(1)
img, _, _ = synthetic_scene((512, 512), seed=0)
sp = torch.from_numpy(superpixels_1000(img))[None]
g = torch.Generator().manual_seed(0)
feats = [torch.randn(1, 256, 512 // s, 512 // s, generator=g) for s in STRIDES]
sizes = [f.shape[-2:] for f in feats]
G = RegionGraph(sp, sizes, STRIDES, kernel='torch')  # scatter_add for R, torch's CSR product for M
GN = RegionGraph(sp, sizes, STRIDES, kernel='numba')  # the library's default where numba is installed
with torch.no_grad():
    for l in range(4): G.pool(feats[l], l); G.cells(l)
    ref = [G.pool(f, l) for l, f in enumerate(feats)]
    def scatter(): return [G.pool(f, l) for l, f in enumerate(feats)]
    def cl_copy(): return [(G.cells(l) @ f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])) for l, f in enumerate(feats)]
    def cl_view(fs): return [(G.cells(l) @ f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])) for l, f in enumerate(fs)]
    fcl = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    def bincount():
        out = []
        for l, f in enumerate(feats):
            C = f.shape[1]; S1 = G.S + 1
            idx = (G.lab[l] + torch.arange(C)[:, None] * S1).reshape(-1)
            out.append(torch.bincount(idx, f.reshape(-1), minlength=C * S1).view(C, S1)[:, :-1].t())
        return out
    perm = [torch.argsort(G.lab[l][0], stable=True) for l in range(4)]
    lens = [torch.bincount(G.lab[l][0], minlength=G.S + 1) for l in range(4)]
    def segred():
        return [torch.segment_reduce(f.reshape(f.shape[1], -1)[:, perm[l]], 'sum', lengths=lens[l].expand(f.shape[1], -1).contiguous(), axis=1)[:, :-1].t() for l, f in enumerate(feats)]
    def mm_dense_sparse():
        return [torch.mm(f.reshape(f.shape[1], -1), G.cells(l).t()).t() for l, f in enumerate(feats)]
    def cl_index_add(fs): return [G.pool(f, l) for l, f in enumerate(fs)]
    def gather_floor(): return [f.reshape(f.shape[1], -1).index_select(1, perm[l]) for l, f in enumerate(feats)]
    def index_add_cells(): return [f.new_zeros(1, f.shape[1], G.S + 1).index_add_(2, G.lab[l][0], f.reshape(1, f.shape[1], -1))[0, :, :-1].t() for l, f in enumerate(feats)]
    try:
        import numba
        @numba.njit(nogil=True)
        def _loop8(x, lab, out):  # x (C, N), lab (N,), out (S+1, C): 8 channels per pass over the cells, in cell order
            C, N = x.shape
            for c0 in range(0, C, 8):
                for i in range(N):
                    k = lab[i]
                    for j in range(c0, min(C, c0 + 8)): out[k, j] += x[j, i]
        labn = [G.lab[l][0].numpy() for l in range(4)]
        def numba8():
            out = []
            for l, f in enumerate(feats):
                o = np.zeros((G.S + 1, f.shape[1]), np.float32); _loop8(f.reshape(f.shape[1], -1).numpy(), labn[l], o); out.append(torch.from_numpy(o[:-1]))
            return out
    except ImportError: numba8 = None
    def runsum(): return [GN.pool(f, l) for l, f in enumerate(feats)]
    alts = [('run-sum kernel (now)', runsum), ('scatter_add (before)', scatter), ('channels-last view + index_add (now)', lambda: cl_index_add(fcl)),
            ('channels-last view + CSR (before)', lambda: cl_view(fcl)), ('gather in region order (floor)', gather_floor),
            ('index_add along the cells', index_add_cells), ('permute copy + CSR', cl_copy), ('bincount', bincount),
            ('segment_reduce', segred), ('dense@sparse^T', mm_dense_sparse)] + ([('numba, 8 channels per pass', numba8)] if numba8 else [])
    for name, fn in alts:
        if name.startswith('gather'):
            print(f"{name:36s} {timeit(fn, 7) * 1e3:7.2f} ms  (no sum: a copy of the same numbers)", flush=True); continue
        try:
            got = fn()
            err = max(float((a - b).abs().max()) for a, b in zip(got, ref))
            print(f"{name:36s} {timeit(fn, 7) * 1e3:7.2f} ms  max|diff| {err:.2e}", flush=True)
        except Exception as e: print(name, 'failed', str(e)[:100])
    for l in range(4): print(l, feats[l].shape, 'scatter ms', round(timeit(lambda: G.pool(feats[l], l), 7) * 1e3, 2))
    print('neighbours ms', round(timeit(lambda: [G.neighbours(r) for r in ref], 7) * 1e3, 2))

with torch.no_grad():  # M and the index layout of R
    R = [G.pool(f, l) for l, f in enumerate(feats)]
    M = [G.neighbours(r) for r in R]
    A = G.adj_csr
    crow, col = A.crow_indices(), A.col_indices()
    rows = torch.repeat_interleave(torch.arange(len(crow) - 1), crow.diff())
    def m_csr(): return [G.neighbours(r) for r in R]
    def m_kernel(): return [GN.neighbours(r) for r in R]
    def m_gather(): return [torch.zeros_like(r).index_add_(0, rows, r.index_select(0, col)) for r in R]
    coo = G.adj
    def m_coo_mm(): return [torch.sparse.mm(coo, r) for r in R]
    def m_addmm(): return [torch.addmm(torch.zeros_like(r), A, r) for r in R]
    Rcol = [r.t().contiguous().t() for r in R]  # the column-major view R had before it was written as rows
    def m_csr_colmajor(): return [G.neighbours(r) for r in Rcol]
    for name, fn in [('M CSR kernel (now)', m_kernel), ('M torch csr @ (rows, before)', m_csr), ('M csr @ (column-major R, before)', m_csr_colmajor), ('M gather+index_add', m_gather), ('M coo mm', m_coo_mm)]:
        got = fn(); err = max(float((a - b).abs().max()) for a, b in zip(got, M))
        print(f"{name:28s} {timeit(fn, 9) * 1e3:7.2f} ms  max|diff| {err:.2e}", flush=True)
    for l in range(4): print('M level', l, round(timeit(lambda: G.neighbours(R[l]), 9) * 1e3, 3), 'gather', round(timeit(lambda: torch.zeros_like(R[l]).index_add_(0, rows, R[l].index_select(0, col)), 9) * 1e3, 3))
    # R variants
    lab = [G.lab[l] for l in range(4)]
    def r_scatter(): return [G.pool(f, l) for l, f in enumerate(feats)]
    labc = [G.lab[l].unsqueeze(1).expand(-1, 256, -1).contiguous() for l in range(4)]
    def r_scatter_cidx(): return [f.new_zeros(1, 256, G.S + 1).scatter_add_(2, labc[l], f.reshape(1, 256, -1))[..., :-1].transpose(1, 2).reshape(G.n, 256) for l, f in enumerate(feats)]
    def r_scatter_reduce(): return [f.new_zeros(1, 256, G.S + 1).scatter_reduce_(2, labc[l], f.reshape(1, 256, -1), 'sum')[..., :-1].transpose(1, 2).reshape(G.n, 256) for l, f in enumerate(feats)]
    for name, fn in [('R scatter_add (expand idx)', r_scatter), ('R scatter_add (contig idx)', r_scatter_cidx), ('R scatter_reduce', r_scatter_reduce)]:
        got = fn(); err = max(float((a - b).abs().max()) for a, b in zip(got, R))
        print(f"{name:28s} {timeit(fn, 9) * 1e3:7.2f} ms  max|diff| {err:.2e}", flush=True)
