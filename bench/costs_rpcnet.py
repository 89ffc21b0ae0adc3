"""Rows of bench_costs.py: RPCNet-R101 at 1024x2048 (the paper tables no parameters or FLOPs), with the library's
defaults (C = 256, S = 8, G = {1,3,5,7}, one set of GxG convolutions per refined map, level 0 at layer4, ∇M fusion)
and the choices that move the numbers, next to DeepLabV3 R101 OS8 at the same size.

What drives them: the parameters are the GxG context convolutions, C^2 (1+9+25+49) + 4C = 5.5M each, 38 of them at
S = 8 (5 per full step, 3 in the last) = 209M of the 262M; sharing the steps' modules (share=True) leaves 10 (55M).
The FLOPs are the dilated ResNet-101 (output stride 16) and the reductions (the 3x3 conv of layer1's 256 channels at
1/4 alone is 77 GMACs at 1024x2048), plus the level-0 3x3 convolutions at 1/16 (7 x 4.8 GMACs); the context
convolutions act on GxG pooled maps and cost almost nothing; layer3 (1024 channels) instead of layer4 (2048) at
level 0 halves that level's reduction (layer4 is still computed). Table 1's "PCM -" baseline (`pcm=False`, plain 1x1
convolutions in place of the patch pyramid) has 38 contexts of C^2 + C = 66K parameters (2.5M in all, as the {1} row);
its convolutions run on the maps themselves (up to 1/4 resolution), not on pooled ones, so they cost FLOPs the pyramid
does not."""
from boundaryseg.models.zoo import seg_model

R101 = dict(backbone='resnet101', n_classes=19)
SIZE = (1024, 2048)
ROWS = [
    dict(model='RPCNet R101 OS16 (S=8, C=256, G=1,3,5,7)', build=lambda: seg_model('rpcnet', **R101), size=SIZE, paper_params=None,
         paper_gflops=None, note='defaults: a module per refined map, level 0 = layer4'),
    dict(model='RPCNet R101 OS16, steps share modules', build=lambda: seg_model('rpcnet', **R101, share=True), size=SIZE,
         paper_params=None, paper_gflops=None),
    dict(model='RPCNet R101 OS16, level 0 = layer3', build=lambda: seg_model('rpcnet', **R101, deep16=False), size=SIZE,
         paper_params=None, paper_gflops=None),
    dict(model='RPCNet R101 OS16, PCM - (plain 1x1 convs, Table 1 rows 1-3)', build=lambda: seg_model('rpcnet', **R101, pcm=False), size=SIZE,
         paper_params=None, paper_gflops=None, note="38 contexts of C^2 + C = 66K each (the {1} row's) instead of 5.5M; no_pcm='none' has none"),
    dict(model='RPCNet R101 OS16, S=2', build=lambda: seg_model('rpcnet', **R101, steps=2), size=SIZE, paper_params=None,
         paper_gflops=None),
    dict(model='DeepLabV3 R101 d8 (for comparison)', build=lambda: seg_model('deeplabv3', **R101, aux=False), size=SIZE,
         paper_params=None, paper_gflops=None),
]
