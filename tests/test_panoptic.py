"""Seamless Scene Segmentation end to end: one training step on the real COCO panoptic and Cityscapes fixtures (readers ->
targets -> the six losses), data-parallel training on two gloo processes, the panoptic writers read by cityscapesscripts'
evaluator and panopticapi, the command line (train, eval, predict) on a tiny synthetic set, and bad input."""
import json, math
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.distributed as dist

from boundaryseg.core import fixtures_path, load_ids, DataError
from boundaryseg.data.labels import CITYSCAPES
from boundaryseg.metrics.panoptic import PanopticMetrics, sem_inst_to_panoptic
from conftest import ref_run, run_gloo

FX = fixtures_path()
COCO = FX/'coco_panoptic'/'sample_data'
FRAME = 'frankfurt_000000_000294'
CS_GT = FX/'cityscapes'/'gtFine'/'val'/'frankfurt'
TERMS = ('seg', 'rpn_obj', 'rpn_box', 'roi_cls', 'roi_box', 'roi_msk')
SMALL = dict(anchor_scale=2., width=64, roi_kw=dict(n_samples=64, fc=128, conv=64), rpn_kw=dict(pre_nms=(1000, 500), post_nms=(200, 100)))


def _one_step(dls, tmp_path):
    "One training iteration (and a validation pass) of Seamless through seg_learner; the six terms' training averages."
    from boundaryseg.learner import seg_learner
    torch.manual_seed(0)
    learn = seg_learner(dls, 'seamless', 'resnet18', path=tmp_path, checkpoint=None, min_stuff_area=64, **SMALL)
    learn.fit(1)
    names = list(learn.recorder.metric_names)[1:-1]
    vals = dict(zip(names, learn.recorder.values[-1]))
    return {t: vals[f'train_{t}'] for t in TERMS}, vals


def test_one_step_coco_panoptic(tmp_path):
    "Real COCO panoptic PNG + JSON -> mask / inst -> short-side scaling, flip, padding -> instance targets -> six finite losses."
    from boundaryseg.panoptic.data import panoptic_dataloaders
    from boundaryseg.data.datasets import COCOPanopticDataset
    r = COCOPanopticDataset(None, 'val', json_path=COCO/'panoptic_examples.json', png_dir=COCO/'panoptic_examples',
                            img_dir=COCO/'input_images', categories=FX/'coco_panoptic'/'panoptic_coco_categories.json')
    dls = panoptic_dataloaders(short=160, scale=(0.8, 1.2), bs=2, seed=0, device='cpu', test_short=160, readers=(r, r))
    img, mask, inst = dls.one_batch()
    assert img.shape[0] == 2 and (inst < 0).any()  # two images of different sizes: one is padded (-1 = outside)
    terms, vals = _one_step(dls, tmp_path)
    assert all(math.isfinite(v) and v >= 0 for v in terms.values()), terms
    assert terms['roi_msk'] > 0 and terms['rpn_box'] > 0  # instances were found and trained on
    assert 0 <= vals['pq'] <= 1


def test_one_step_cityscapes(tmp_path):
    "Real Cityscapes labelIds + instanceIds -> the same pipeline (crops of seg_dataloaders this time)."
    from boundaryseg.data.block import seg_dataloaders
    dls = seg_dataloaders('cityscapes', FX/'cityscapes', size=(96, 192), bs=2, targets=('mask', 'inst'), train_split='val',
                          seed=0, device='cpu', scale=(0.9, 1.1))
    terms, _ = _one_step(dls, tmp_path)
    assert all(math.isfinite(v) and v >= 0 for v in terms.values()), terms
    assert terms['roi_msk'] > 0


# ---------------------------------------------------------------- DDP
def _ddp_worker(rank, world, root, out):
    from boundaryseg.core import set_seed
    from boundaryseg.data.block import seg_dataloaders
    from boundaryseg.learner import seg_learner
    import boundaryseg.distributed  # Learner.to_ddp
    torch.set_num_threads(1)
    set_seed(0)
    dls = seg_dataloaders('synthetic', root, size=(64, 128), bs=1, targets=('mask', 'inst'), device='cpu', seed=0)
    learn = seg_learner(dls, 'seamless', 'resnet18', path=Path(out)/f'r{rank}', checkpoint=None, metrics=[], min_stuff_area=64, **SMALL).to_ddp(seed=3)
    learn.fit(1)
    w = torch.cat([p.detach().flatten() for p in learn.model.parameters()])
    ws = [torch.zeros_like(w) for _ in range(world)]
    dist.all_gather(ws, w)
    torch.save({'same': bool(torch.equal(ws[0], ws[1])), 'loss': float(learn.recorder.values[-1][0])}, Path(out)/f'r{rank}.pt')


def test_ddp_two_processes(tmp_path):
    "Two gloo processes train Seamless with DDP (every trainable parameter gets a gradient each step) and end with equal weights."
    from boundaryseg.data.synthetic import make_synthetic_cityscapes
    root = make_synthetic_cityscapes(tmp_path/'syn', n_train=4, n_val=2, size=(64, 128))
    run_gloo(_ddp_worker, 2, str(root), str(tmp_path))
    for r in range(2):
        res = torch.load(tmp_path/f'r{r}.pt')
        assert res['same'] and math.isfinite(res['loss'])


# ---------------------------------------------------------------- writers vs the official evaluators
def test_writers_read_by_cityscapes_and_panopticapi(tmp_path):
    """Predictions written by the Cityscapes and COCO panoptic writers score, under cityscapesscripts' evaluatePanoptic and
    panopticapi's pq_compute, what PanopticMetrics gives on the same (sem, inst) maps."""
    from boundaryseg.panoptic.inference import save_panoptic, finish_panoptic
    from test_metrics_panoptic import cityscapes_frames
    gsem, inst, frames, city, preds = cityscapes_frames(tmp_path)
    for f, (s, i) in zip(frames, preds):
        dense, segs = sem_inst_to_panoptic(s, i, CITYSCAPES, no_inst='void')
        cat = np.array([255] + [g['category_id'] for g in segs])[dense]
        pan = cat * 1000 + np.where(CITYSCAPES.thing[np.minimum(cat, 18)] & (dense > 0), dense, 0)
        for style, fmt in (('cityscapes', 'panoptic_cityscapes'), ('coco', 'panoptic')):
            save_panoptic(pan, tmp_path/fmt, Path('frankfurt')/f'{f}_leftImg8bit.png' if style == 'cityscapes' else f'{f}.png', CITYSCAPES, style)
    for fmt in ('panoptic_cityscapes', 'panoptic'): finish_panoptic(tmp_path/fmt, CITYSCAPES)
    out = tmp_path/'gtpan'
    out.mkdir()
    gt = dict(gt_json=str(out/'cityscapes_panoptic_val.json'), gt_folder=str(out/'cityscapes_panoptic_val'))
    ref = ref_run('ref_panoptic.py', {'cases': [
        dict(name='convert', op='convert_cityscapes', gtFine=str(tmp_path/'gtFine'), out_dir=str(out)),
        dict(name='cs', op='cityscapes', **gt, pred_json=str(tmp_path/'panoptic_cityscapes.json'),
             pred_folder=str(tmp_path/'panoptic_cityscapes'), results_file=str(tmp_path/'res.json')),
        dict(name='coco', op='pq_compute', **gt, pred_json=str(tmp_path/'panoptic.json'), pred_folder=str(tmp_path/'panoptic'))]}, tmp_path)
    pm = PanopticMetrics(CITYSCAPES, min_inst=1000)
    for s, i in preds: pm.update(s, i, gsem, inst)
    r = pm.scores()
    for name in ('cs', 'coco'):
        for part, sfx in (('All', ''), ('Things', '_th'), ('Stuff', '_st')):
            for k in ('pq', 'sq', 'rq'):
                assert ref[name][part][k] == pytest.approx(r[f'{k}{sfx}'], abs=1e-9), (name, part, k)
    assert 0.1 < r['pq'] < 0.9


# ---------------------------------------------------------------- the command line
def test_cli_train_eval_predict(tmp_path, capsys):
    "boundaryseg train / eval / predict with --arch seamless on a tiny synthetic set: PQ..mask AP reported, both panoptic formats written."
    from boundaryseg.data.synthetic import make_synthetic_cityscapes
    from boundaryseg.cli.train import train_cmd
    from boundaryseg.cli.evaluate import eval_cmd
    from boundaryseg.cli.predict import predict_cmd
    root = make_synthetic_cityscapes(tmp_path/'syn', n_train=2, n_val=2, size=(64, 128))
    train_cmd(data='synthetic', root=str(root), arch='seamless', backbone='resnet18', size='64,128', bs=2, epochs=1, out=str(tmp_path/'run'))
    model = str(tmp_path/'run'/'model.pth')
    s = eval_cmd(model, data='synthetic', root=str(root), out=str(tmp_path/'ev'), bs=1)
    txt = capsys.readouterr().out
    for k in ('PQ ', 'things: PQ', 'stuff:  PQ', 'PQ†', 'mIoU', 'mask AP'): assert k in txt
    assert set(s) >= {'pq', 'pq_th', 'pq_st', 'sq', 'rq', 'pq_dagger', 'miou', 'miou_semantic', 'ap'}
    assert json.loads((tmp_path/'ev'/'metrics.json').read_text())['n_images'] == 2
    predict_cmd(model, str(root/'leftImg8bit'/'val'), out=str(tmp_path/'pred'), recursive=True)
    js = json.loads((tmp_path/'pred'/'panoptic_cityscapes.json').read_text())
    assert len(js['annotations']) == 2 and js['annotations'][0]['image_id'].endswith('_000019')
    assert sorted(p.name for p in (tmp_path/'pred').iterdir()) == ['color', 'labelIds', 'panoptic', 'panoptic.json', 'panoptic_cityscapes',
                                                                  'panoptic_cityscapes.json', 'trainIds']
    with pytest.raises(ValueError, match='one scale'): eval_cmd(model, data='synthetic', root=str(root), scales='1,2')


# ---------------------------------------------------------------- bad input
def test_bad_input():
    from boundaryseg.models.zoo import seg_model
    from boundaryseg.losses import seg_loss
    from boundaryseg.panoptic.data import instance_targets, InstanceTargets
    torch.manual_seed(0)
    net = seg_model('seamless', 'resnet18', n_classes=3, thing=[False, True, False], **SMALL).train()
    lf = seg_loss('seamless', 3)
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 64, 64, dtype=torch.long); mask[:, 8:30, 8:40] = 1
    none, crowd = torch.zeros(2, 64, 64, dtype=torch.int32), torch.zeros(2, 64, 64, dtype=torch.int32)
    # an image without instances (no thing pixel) and a crowd-only image (thing pixels, no instance id): finite losses
    for m, i in ((torch.zeros_like(mask), none), (mask, crowd)):
        l = lf(net(x, m, i), m, i)
        assert torch.isfinite(l) and lf.last['roi_msk'] == 0 and lf.last['rpn_box'] == 0
    # a one-pixel instance has a 1x1 box; a zero-area box (given by hand) is refused by name
    one = torch.zeros(1, 8, 8, dtype=torch.long); one[0, 3, 4] = 1
    t = instance_targets(one, one.int(), [False, True])
    assert t.boxes.tolist() == [[4., 3., 5., 4.]]
    with pytest.raises(DataError, match='zero area'):
        InstanceTargets(torch.tensor([[4., 3., 4., 4.]]), t.labels, t.img, t.index, t.crowd, t.void, t.sizes).check()
    # class lists without things, and masks with ids outside the classes
    with pytest.raises(ValueError, match='at least one thing class'): seg_model('seamless', 'resnet18', n_classes=3, thing=[False] * 3)
    with pytest.raises(DataError, match=r'values \[7\]'): net(x, mask.masked_fill(mask == 1, 7), crowd)
    with pytest.raises(ValueError, match='needs the `mask` and `inst` targets'): net(x)


def test_random_backbone_trains_its_stem(tmp_path):
    """Issue 19 (5): Seamless freezes the stem and res2 only when they hold trained weights. With pretrained=False
    they train (a frozen random res2 is the identity: timm zero-initialises each block's last norm); with weights from
    a file (a trained timm state dict stands in for ImageNet's) they are frozen, as the authors' num_frozen=2."""
    import timm
    from boundaryseg.models.zoo import seg_model
    from boundaryseg.losses import seg_loss
    thing = [False, True, False]
    torch.manual_seed(0)
    net = seg_model('seamless', 'resnet18', n_classes=3, thing=thing, pretrained=False, min_stuff_area=64, **SMALL).train()
    assert net.backbone.frozen == [] and all(p.requires_grad for p in net.backbone.parameters())
    x = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.long); mask[:, 10:30, 20:50] = 1; mask[:, 40:] = 2
    inst = torch.zeros(2, 64, 96, dtype=torch.int32); inst[mask == 1] = 5
    seg_loss('seamless', 3)(net(x, mask, inst), mask, inst).backward()
    for mod in (net.backbone.body.conv1, net.backbone.body.layer1[0].bn2):   # the stem, and res2's zero-initialised last norm
        assert mod.weight.grad is not None and mod.weight.grad.abs().sum() > 0
    w = tmp_path / 'resnet18.pth'
    torch.save(timm.create_model('resnet18').state_dict(), w)
    pre = seg_model('seamless', 'resnet18', n_classes=3, thing=thing, pretrained=w, **SMALL)
    assert pre.backbone.pretrained and pre.backbone.frozen == ['conv1', 'bn1', 'act1', 'maxpool', 'layer1']
    assert not any(p.requires_grad for p in pre.backbone.body.layer1.parameters())
    assert seg_model('seamless', 'resnet18', n_classes=3, thing=thing, freeze=2, **SMALL).backbone.frozen[-1] == 'layer1'  # explicit: obeyed


def test_warmup_scales_with_the_run():
    """Issue 19 (5): the seamless recipe warms up for 200 of its 48k iterations; a 500-iteration run warms up for the
    same fraction (about 2 iterations), not for 40% of the run, and its milestones fall at 75% and 92%."""
    from boundaryseg.recipes import get_recipe
    from boundaryseg.learner import recipe_lr
    r = get_recipe('seamless')
    assert math.isclose(recipe_lr(0.01, r, 100 / 48_000, 48_000), 0.01 * (1 / 3 + 100 * (2 / 3) / 200))   # the paper's run: unchanged
    assert math.isclose(recipe_lr(0.01, r, 10 / 500, 500), 0.01)                                       # past the warm-up at step 10
    assert math.isclose(recipe_lr(0.01, r, 1 / 500, 500), 0.01 * (1 / 3 + (2 / 3) / (200 * 500 / 48_000)))
    assert math.isclose(recipe_lr(0.01, r, 376 / 500, 500), 0.001) and math.isclose(recipe_lr(0.01, r, 460 / 500, 500), 0.0001)


def test_synthetic_configuration_covers_the_objects(tmp_path):
    """Issue 19 (5): the synthetic Seamless run reads through panoptic_dataloaders with scene scale and anchors matched:
    most thing boxes have an anchor at IoU >= 0.5, several times more at the matcher's 0.7 than the old configuration
    (128x256 crops through seg_dataloaders, scale-2 anchors), and P6 has valid anchors (it had none)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('seamless_anchors', Path(__file__).resolve().parents[1] / 'experiments' / 'seamless_anchors.py')
    sa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sa)
    res = {k: sa.measure(c, tmp_path / k, batches=4) for k, c in sa.CONFIGS.items()}
    before, after = res['before'], res['after']
    assert sa.CONFIGS['after']['loader'] == 'panoptic'
    assert before['valid_anchors_per_level']['P6'] == 0 < after['valid_anchors_per_level']['P6']
    assert before['iou_ge_07'] < 0.15 and after['iou_ge_07'] > 2 * before['iou_ge_07'], res
    assert after['iou_ge_05'] > 0.75 > before['iou_ge_05'], res
