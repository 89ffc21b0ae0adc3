"""The alternative to the numba kernel that was measured and not chosen: Test-NMS written as dense torch ops (every pixel,
no tiles) and compiled by `torch.compile` (inductor's C++ code on CPU), on 4 of bench_nms.py's dense float64 maps
(4 x 512 x 1024): its compile time, its CPU time next to `edge_nms` (the numba kernel) in the same process, one thread,
and the pixels where the two differ.

    .venv/bin/python bench/nms_torch_compile.py     # about half a minute

Prints only (the figures are quoted in nbs/42a_metrics.nms.ipynb)."""
import math, sys, time, numpy as np, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent)); sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from boundaryseg.metrics.nms import edge_nms
from bench_nms import maps
torch.set_num_threads(1)

F1 = [0.25, 0.5, 0.25]
F4 = [v / 25 for v in (1, 2, 3, 4, 5, 4, 3, 2, 1)]

def ctap(x, f, dim):
    r = len(f) // 2
    n = x.shape[dim]
    idx = torch.arange(-r, n + r)
    idx = torch.where(idx < 0, -idx - 1, torch.where(idx >= n, 2 * n - 1 - idx, idx))
    xp = x.index_select(dim, idx)
    L = n
    out = xp.narrow(dim, len(f) - 1, L) * f[0]
    for j in range(1, len(f)): out = out + xp.narrow(dim, len(f) - 1 - j, L) * f[j]
    return out

def tri(x, f): return ctap(ctap(x, f, -1), f, -2)

def grad(x, dim):
    n = x.shape[dim]
    mid = (x.narrow(dim, 2, n - 2) - x.narrow(dim, 0, n - 2)) / 2.
    return torch.cat([x.narrow(dim, 1, 1) - x.narrow(dim, 0, 1), mid, x.narrow(dim, n - 1, 1) - x.narrow(dim, n - 2, 1)], dim)

def dense_nms(p, m: float):
    N, H, W = p.shape
    E = tri(p, F1)
    E4 = tri(E, F4)
    oy = grad(E4, -2)
    oxx = grad(grad(E4, -1), -1)
    oyy, oxy = grad(oy, -2), grad(oy, -1)
    oxx = torch.where(oxx == 0, torch.full_like(oxx, 1e-5), oxx)
    O = torch.remainder(torch.atan(oyy * torch.sign(-oxy) / oxx), math.pi)
    c, s = torch.cos(O), torch.sin(O)
    yy = torch.arange(H, dtype=p.dtype).view(1, H, 1); xx = torch.arange(W, dtype=p.dtype).view(1, 1, W)
    Ef = E.reshape(N, -1)
    em = E * m
    sup = torch.zeros_like(E, dtype=torch.bool)
    for d in (-1, 1):
        xs = (xx + d * c).clamp(0, W - 1.001); ys = (yy + d * s).clamp(0, H - 1.001)
        x0, y0 = xs.floor(), ys.floor()
        dx0, dy0 = xs - x0, ys - y0
        dx1, dy1 = 1 - dx0, 1 - dy0
        j = (y0.long() * W + x0.long()).reshape(N, -1)
        g = lambda o: torch.gather(Ef, 1, j + o).view(N, H, W)
        v = g(0) * dx1 * dy1 + g(1) * dx0 * dy1 + g(W) * dx1 * dy0 + g(W + 1) * dx0 * dy0
        sup = sup | (em < v)
    out = torch.where(sup, torch.zeros_like(E), E)
    return out.clone()

x = torch.from_numpy(maps()['float'][:4])
m = float(np.float32(1.01))
t = time.time(); ref_eager = dense_nms(x, m); te = time.time() - t
torch._dynamo.config.cache_size_limit = 64
f = torch.compile(dense_nms, dynamic=False)
t = time.time(); y = f(x, m); tc = time.time() - t
y = f(x, m)
t = time.process_time(); y = f(x, m); tr = time.process_time() - t
e = edge_nms(x.numpy())
t = time.process_time(); e = edge_nms(x.numpy()); tn = time.process_time() - t
s = 5
ff = torch.arange(s, dtype=torch.float64) / s
for o in (y, ref_eager):
    o[..., :s] *= ff; o[..., -s:] *= ff.flip(0); o[..., :s, :] *= ff[:, None]; o[..., -s:, :] *= ff.flip(0)[:, None]
print(f"eager dense {te:.2f}s; compile+first call {tc:.1f}s; compiled run {tr:.3f}s CPU; numba edge_nms {tn:.3f}s CPU")
print("pixels differing: compiled vs edge_nms", int((y.numpy() != e).sum()), "eager dense vs edge_nms", int((ref_eager.numpy() != e).sum()), "of", e.size)
