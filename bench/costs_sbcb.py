"Rows of bench_costs.py: SBCB Table 1 (single-task detectors, DeepLabV3+ + SBCB in training), Table 4's head deltas, Table 8a's HED backbone."
from boundaryseg.models.zoo import seg_model

R101 = dict(backbone='resnet101', n_classes=19)
S = (512, 1024)
head = lambda m: [m.train_heads['sbcb']]


def training(m):
    "Count the training-time model: the training-only heads run (in eval mode, as a batch of one image needs for BN)."
    m.run_train_heads = True
    return m

ROWS = [
    dict(model='CASENet R101 d8 (SBCB Table 1)', build=lambda: seg_model('casenet', **R101), size=S, paper_params=42.5e6, paper_gflops=357),
    dict(model='DFF R101 d8 (SBCB Table 1)', build=lambda: seg_model('dff', **R101), size=S, paper_params=42.8e6, paper_gflops=395),
    dict(model='DDS R101 d8 (SBCB Table 1)', build=lambda: seg_model('dds', **R101), size=S, paper_params=243.3e6, paper_gflops=2079),
    dict(model='DeepLabV3+ + SBCB(CASENet), training (Table 1)', build=lambda: training(seg_model('deeplabv3plus', aux=False, boundary_head='casenet', **R101)),
         size=S, paper_params=60.2e6, paper_gflops=508),
    dict(model='DeepLabV3+ + SBCB(DFF), training (Table 1)', build=lambda: training(seg_model('deeplabv3plus', aux=False, boundary_head='dff', **R101)),
         size=S, paper_params=60.5e6, paper_gflops=545),
    dict(model='DeepLabV3+ + SBCB(DDS), training (Table 1)', build=lambda: training(seg_model('deeplabv3plus', aux=False, boundary_head='dds', **R101)),
         size=S, paper_params=261.0e6, paper_gflops=2228),
    dict(model='DeepLabV3+ + SBCB(CASENet), inference (= baseline)',
         build=lambda: seg_model('deeplabv3plus', aux=False, boundary_head='casenet', **R101).plain(), size=S, paper_params=60.2e6, paper_gflops=506),
    dict(model='SBCB(CASENet) head alone (Table 4 "+0.05M")', build=lambda: training(seg_model('deeplabv3plus', aux=False, boundary_head='casenet', **R101)),
         size=S, parts=head, paper_params=43.1e3, paper_gflops=None, note='spec A5: 43.1K; the table rounds up to +0.05M'),
    dict(model='BBCB head alone (Table 4 "+0.01M")', build=lambda: training(seg_model('deeplabv3plus', aux=False, boundary_head='bbcb', **R101)),
         size=S, parts=head, paper_params=2.93e3, paper_gflops=None, note='spec A5: 2.93K; the table rounds up to +0.01M'),
    dict(model='HED CASENet R101 (SBCB Table 8a)', build=lambda: seg_model('casenet', trick='edge', **R101), size=S, paper_params=42.5e6,
         paper_gflops=417),
    dict(model='HED DFF R101 (SBCB Table 8a)', build=lambda: seg_model('dff', trick='edge', **R101), size=S, paper_params=42.8e6, paper_gflops=455),
    dict(model='HED DDS R101 (SBCB Table 8a)', build=lambda: seg_model('dds', trick='edge', **R101), size=S, paper_params=243.3e6, paper_gflops=2661),
]
