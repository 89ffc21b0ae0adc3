"""Rows of bench_costs.py: MSCI (Lin et al., ECCV 2018) on ResNet-152 at 512x512, its Table 1 variants and FCN baseline.

The paper gives no parameter or FLOP count; `note` carries the spec's estimate (seamless_msci.md B7: 79.6M parameters,
0.52 TMAC in the gate convolutions at C = 256, 0.06 T with 1x1 gates). Counted as multiply-accumulates of the
convolutional and linear layers ('macs'); the super-pixel aggregation itself (index_add, sparse product, gather) has
no multiply-accumulates of a layer and is not counted. The super-pixel map is a regular grid of 1,000 cells here:
the costs do not depend on the regions' shapes, only on their number (the linear maps act on one row per region)."""
import torch
from boundaryseg.models.zoo import seg_model


def grid_sp(size, n=1000):
    "Inputs (image, super-pixels) with about n super-pixels in a regular grid."
    h, w = size
    k = max(int((h * w / n) ** 0.5), 1)
    sp = (torch.arange(h)[:, None] // k) * ((w + k - 1) // k) + torch.arange(w)[None] // k
    return torch.zeros(1, 3, h, w), sp[None]


R152 = dict(backbone='resnet152', n_classes=21)
SZ = (512, 512)
ROWS = [
    dict(model='MSCI R152 (C=256, 3x3 gates, T=3)', build=lambda: seg_model('msci', **R152), size=SZ, inputs=grid_sp, rules='macs',
         paper_params=None, paper_gflops=None, note='spec estimate 79.6M params; gate convs 0.52 TMAC'),
    dict(model='MSCI R152 gate convolutions only', build=lambda: seg_model('msci', **R152), size=SZ, inputs=grid_sp, rules='macs',
         parts=lambda m: [c.conv for c in (*m.head.up, *m.head.down)], paper_params=None, paper_gflops=None,
         note='spec estimate 0.52 TMAC (516 GMAC by hand: 218,880 gate positions x 2.36M)'),
    dict(model='MSCI R152 without cell states', build=lambda: seg_model('msci_no_cells', **R152), size=SZ, inputs=grid_sp,
         rules='macs', paper_params=None, paper_gflops=None, note='same parameters as MSCI'),
    dict(model='MSCI R152 without super-pixels', build=lambda: seg_model('msci_no_sp', **R152), size=SZ, rules='macs',
         paper_params=None, paper_gflops=None, note='linear maps applied per cell instead of per region'),
    dict(model='MSCI R152 native widths, 1x1 gates', build=lambda: seg_model('msci', width=None, **R152), size=SZ, inputs=grid_sp,
         rules='macs', paper_params=None, paper_gflops=None, note='the spec\'s "1x1 gates" option'),
    dict(model='FCN R152 d8 + 1x1 classifier (MSCI Table 1)', build=lambda: seg_model('msci_fcn', **R152), size=SZ, rules='macs',
         paper_params=None, paper_gflops=None, note="MSCI's Table 1/2 basic FCN"),
]
