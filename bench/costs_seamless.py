"""Rows of bench_costs.py: Seamless Scene Segmentation (Sec. 5.4). Parameters of the combined Cityscapes model (51.43M), its
Vistas configuration, the two independent models (78.06M together), and the multiply-accumulates of the dense part (body +
FPN + RPN convolutions + semantic head) at 1024x2048, which is what the paper's "≈ 0.514 TFLOP" counts."""
from boundaryseg.models.zoo import seg_model
from boundaryseg.data.labels import CITYSCAPES

CS = dict(n_classes=19, thing=CITYSCAPES.thing.tolist())
VISTAS = dict(n_classes=65, thing=[False] * 28 + [True] * 37, extra=2, anchor_scale=2., ratios=(0.2, 0.5, 1., 2., 5.), max_det=256)
combined = lambda **kw: seg_model('seamless', 'resnet50', **{**CS, **kw})
ROWS = [
    dict(model='Seamless combined, Cityscapes (Sec. 5.4)', build=combined, size=(64, 128), rules='macs', paper_params=51.43e6,
         paper_gflops=None, note='19 classes, 8 things, 5 FPN levels, 3 anchors, MiniDL final 1x1; exact count 51,434,387'),
    dict(model='Seamless dense part @1024x2048 (Sec. 5.4)', build=combined, size=(1024, 2048), rules='macs', paper_params=None,
         paper_gflops=514., parts=lambda m: [m.backbone, m.neck, m.head.rpn.head, m.head.semantic],
         note='MACs of body + FPN + RPN convs + semantic head (the paper\'s "0.514 TFLOP"); params of those parts only'),
    dict(model='Seamless combined, Vistas config', build=lambda: seg_model('seamless', 'resnet50', **VISTAS), size=(64, 128), rules='macs',
         paper_params=None, paper_gflops=None, note='65 classes, 37 things, 6 levels, 5 anchors; no paper number (spec: 52,206,969)'),
    dict(model='Independent: detection (body+FPN5+RPN+RSH)', build=combined, size=(64, 128), rules='macs', paper_params=None,
         paper_gflops=None, parts=lambda m: [m.backbone, m.neck, m.head.rpn, m.head.roi], note='the instance branch alone'),
    dict(model='Independent: segmentation (body+FPN4+MiniDL)', build=lambda: combined(extra=0), size=(64, 128), rules='macs',
         paper_params=None, paper_gflops=None, parts=lambda m: [m.backbone, m.neck, m.head.semantic],
         note='the semantic branch alone; with the detection row 78.29M vs the paper\'s 78.06M (+0.3%)'),
]
