"""Model checks that are too slow for the notebooks: parameter counts of the ResNet-101 models against SBCB's Table 4,
and output shapes of every head on every backbone family at an odd input size, in training and eval mode."""
import pytest
import torch
from torch import nn

from boundaryseg.models.backbones import Backbone
from boundaryseg.models.zoo import ARCHS, seg_model


def n_params(m): return sum(p.numel() for p in m.parameters())


# SBCB (Ishikawa & Aoki 2023) Table 4, ResNet-101, 19 Cityscapes classes. The configuration that reproduces them is
# SBCB's public code (mmseg): torchvision's ResNet-101 ("r101b", timm 'resnet101'; not the V1c deep stem) dilated to
# output stride 8, PSP head with 512 channels, ASPP head with 512 channels and a 3x3 bottleneck, DeepLabV3+ with
# 512 channels, separable ASPP/decoder and a 48-channel c1 projection, FCN auxiliary head with 256 channels and one conv.
TABLE4 = {'psp': 65.58e6, 'deeplabv3': 84.72e6, 'deeplabv3plus': 60.2e6}
AUX = 2.37e6


@pytest.fixture(scope='module')
def r101_models():
    return {arch: seg_model(arch, 'resnet101', n_classes=19, output_stride=8, aux=True) for arch in TABLE4}


@pytest.mark.parametrize('arch', list(TABLE4))
def test_sbcb_table4_params(r101_models, arch):
    m = r101_models[arch]
    total, aux = n_params(m), n_params(m.train_heads['aux'])
    assert abs((total - aux) / TABLE4[arch] - 1) < 0.01, (arch, total - aux)
    # the paper rounds to its printed digits: the match is closer than 1%
    assert round((total - aux) / 1e6, 2 if arch != 'deeplabv3plus' else 1) == round(TABLE4[arch] / 1e6, 2)
    assert abs(aux / AUX - 1) < 0.01, aux


def test_aux_head_by_hand(r101_models):
    # one 3x3 conv 1024->256 (no bias) + BN + 1x1 classifier to 19 classes, on the stride-16 stage
    assert n_params(r101_models['psp'].train_heads['aux']) == 1024 * 256 * 9 + 2 * 256 + 256 * 19 + 19


def test_syncbn_same_count(r101_models):
    m = r101_models['deeplabv3plus']
    before = n_params(m)
    nn.SyncBatchNorm.convert_sync_batchnorm(m)
    assert any(isinstance(l, nn.SyncBatchNorm) for l in m.modules())
    assert n_params(m) == before


def test_v1c_stem_difference():
    # mmseg's default ResNetV1c-101 differs from the 7x7 stem only in the stem: 3x3 convs 3-32-32-64 + two BNs vs 7x7 3->64
    d = n_params(Backbone('resnet101c')) - n_params(Backbone('resnet101'))
    assert d == (3 * 32 + 32 * 32 + 32 * 64) * 9 + 2 * (2 * 32) - 3 * 64 * 49


FAMILIES = [('resnet18', dict(output_stride=8)), ('convnext_atto', dict(output_stride=16)), ('pvt_v2_b0', dict(output_stride=32))]


CLASSIC = [a for a, s in ARCHS.items() if 'neck' not in s.defaults and a in ('fcn', 'psp', 'deeplabv3', 'deeplabv3plus', 'encnet')]


@pytest.mark.parametrize('arch', CLASSIC)
@pytest.mark.parametrize('backbone,kw', FAMILIES, ids=[f[0] for f in FAMILIES])
def test_shapes_every_head(arch, backbone, kw):
    x = torch.randn(2, 3, 97, 129)
    m = seg_model(arch, backbone, n_classes=7, ch=32, **kw)
    out = m.train()(x)
    want = {'seg': (2, 7, 97, 129), 'aux': (2, 7, 97, 129)}
    if 'se' in ARCHS[arch].outputs: want['se'] = (2, 7)
    assert {k: tuple(v.shape) for k, v in out.items()} == want
    sum(v.float().mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    with torch.no_grad(): out = m.eval()(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {'seg': (2, 7, 97, 129)}


@pytest.mark.parametrize('neck', ['jpu', 'bilinear', 'fpn'])
@pytest.mark.parametrize('backbone', ['resnet18', 'convnext_atto', 'pvt_v2_b0'])
def test_fastfcn_necks(neck, backbone):
    x = torch.randn(2, 3, 97, 129)
    for arch in ('encnet', 'deeplabv3', 'psp'):
        m = seg_model(arch, backbone, n_classes=5, neck=neck, output_stride=32, ch=32)
        assert m.neck.feature_info[-1]['reduction'] == 8
        assert m.train()(x)['seg'].shape == (2, 5, 97, 129)
        with torch.no_grad(): assert list(m.eval()(x)) == ['seg']


def test_hrnet_size_divisor():
    # HRNet fuses its branches by adding upsampled maps, so it needs sizes divisible by 32: pad and crop
    x = torch.randn(1, 3, 97, 129)
    m = seg_model('fcn', 'hrnet_w18_small', n_classes=3, ch=16, output_stride=32, size_divisor=32, aux=False).eval()
    with torch.no_grad(): assert m(x)['seg'].shape == (1, 3, 97, 129)
    m.size_divisor = None
    with pytest.raises(RuntimeError), torch.no_grad(): m(x)


def test_hed_backbone_in_seg_model():
    m = seg_model('deeplabv3plus', 'resnet18', ch=32, trick='edge')
    assert m.backbone.reductions == [1, 2, 4, 8, 8]
    assert [b[0][0].dilation[0] for b in m.head.aspp.branches[1:]] == [12, 24, 36]
    assert m.eval()(torch.randn(1, 3, 65, 67))['seg'].shape == (1, 19, 65, 67)


TV_HEAD = dict(ch=256, proj_ks=1, n_convs=1, proj_drop=0.5, proj_drop_2d=False, drop=0.)  # torchvision's DeepLabHead


def _tv_pair():
    from torchvision.models.segmentation import deeplabv3_resnet50
    torch.manual_seed(0)
    ref = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21)
    ours = seg_model('deeplabv3', 'resnet50', n_classes=21, aux=False, **TV_HEAD)
    sd_ref, sd = ref.state_dict(), ours.state_dict()
    assert len(sd_ref) == len(sd) and n_params(ref) == n_params(ours)
    with torch.no_grad():
        for (k, v), (kr, vr) in zip(sd.items(), sd_ref.items()):
            assert v.shape == vr.shape, (k, kr)
            if vr.ndim == 1 and vr.is_floating_point():  # random norm affines and statistics; convs keep their He init
                vr.copy_(torch.rand_like(vr) + 0.5 if kr.endswith(('running_var', 'weight')) else torch.randn_like(vr) * 0.1)
            v.copy_(vr)
    return ours, ref


def test_deeplabv3_equals_torchvision():
    # With torchvision's head configuration (256 channels, 1x1 projection, Dropout(0.5) after it, one more 3x3 conv, no
    # dropout before the classifier) our DeepLabV3 on a timm ResNet-50 at output stride 8 is torchvision's
    # deeplabv3_resnet50: same tensors in the same order, same outputs in eval mode...
    ours, ref = _tv_pair()
    x = torch.randn(1, 3, 97, 129)
    with torch.no_grad(): out, want = ours.eval()(x)['seg'], ref.eval()(x)['out']
    assert want.std(dim=(2, 3)).mean() > 0.1  # a spatially varying output, not a constant that any wiring would match
    assert torch.allclose(out, want, atol=1e-4 * want.abs().max(), rtol=1e-4)


def test_deeplabv3_equals_torchvision_in_train_mode():
    # ... and in train mode: batch statistics in every norm and the same dropout draws at the same place (the dropout
    # after the ASPP projection is element-wise, and there is none before the classifier). Moving the dropout (or making
    # it channel-wise, as FastFCN's Dropout2d) breaks the equality, so the test sees placement, not only the eval path.
    ours, ref = _tv_pair()
    x = torch.randn(2, 3, 65, 81)
    with torch.no_grad():
        torch.manual_seed(1); out = ours.train()(x)['seg']
        torch.manual_seed(1); want = ref.train()(x)['out']
    tol = 1e-4 * float(want.abs().max())
    assert torch.allclose(out, want, atol=tol, rtol=1e-4)
    moved = seg_model('deeplabv3', 'resnet50', n_classes=21, aux=False, **{**TV_HEAD, 'proj_drop_2d': True})
    moved.load_state_dict(ours.state_dict())
    with torch.no_grad(): torch.manual_seed(1); wrong = moved.train()(x)['seg']
    assert not torch.allclose(wrong, want, atol=10 * tol)


def test_fastfcn_forms():
    # FastFCN's code: DeepLabV3 head with Dropout2d(0.5) after a 1x1 256-channel projection and Dropout2d(0.1) before the
    # classifier; PSP pooled maps and every final upsampling with align_corners=True
    m = seg_model('fastfcn_deeplabv3', 'resnet18', n_classes=3)
    drops = [(type(l).__name__, l.p) for l in m.head.modules() if isinstance(l, (nn.Dropout, nn.Dropout2d))]
    assert drops == [('Dropout2d', 0.5), ('Dropout2d', 0.1)]
    assert m.head.aspp.proj[0].kernel_size == (1, 1) and m.head.aspp.proj[0].out_channels == 256
    p = seg_model('fastfcn_psp', 'resnet18', n_classes=3, width=32)
    assert p.align_corners and p.head.align_corners and p.neck.align_corners
    assert not seg_model('psp', 'resnet18', n_classes=3, width=32).head.align_corners
