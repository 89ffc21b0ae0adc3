"Rows of bench_costs.py: the classic heads SBCB builds on (Table 4 parameter counts; Table 1's DeepLabV3+ at 512x1024)."
from boundaryseg.models.zoo import seg_model

R101 = dict(backbone='resnet101', n_classes=19, aux=False)
ROWS = [
    dict(model='PSPNet R101 d8 (SBCB Table 4)', build=lambda: seg_model('psp', **R101), size=(512, 1024), paper_params=65.58e6,
         paper_gflops=None),
    dict(model='DeepLabV3 R101 d8 (SBCB Table 4)', build=lambda: seg_model('deeplabv3', **R101), size=(512, 1024), paper_params=84.72e6,
         paper_gflops=None),
    dict(model='DeepLabV3+ R101 d8 (SBCB Tables 1, 4)', build=lambda: seg_model('deeplabv3plus', **R101), size=(512, 1024),
         paper_params=60.2e6, paper_gflops=506),
]
