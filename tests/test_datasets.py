"""Dataset readers: real fixtures checked against independent decodings (cityscapesscripts tables, the json files'
own areas and object lists), tiny trees of every layout, and every error path of every reader."""
import json, shutil
from pathlib import Path
from types import SimpleNamespace
import numpy as np
import pytest
import scipy.io, scipy.sparse
from PIL import Image

from boundaryseg.core import DataError, fixtures_path
from boundaryseg.data.datasets import (CityscapesDataset, ADE20KDataset, ADE20KFullDataset, VOCDataset, SBDDataset, VOCAugDataset,
                                       PascalContextDataset, BDD100KDataset, MapillaryDataset, COCOPanopticDataset, FolderDataset,
                                       get_dataset, load_sbd_mat, DATASETS)

FX = fixtures_path()
needs_fx = pytest.mark.skipif(not FX.is_dir(), reason=f"fixtures folder not found: {FX} (set BOUNDARYSEG_FIXTURES)")
FRAME = 'frankfurt_000000_000294'
CS_GT = FX/'cityscapes'/'gtFine'/'val'/'frankfurt'
ADE_DIR = FX/'ade20k_full'/'ADE20K_2021_17_01'/'images'/'ADE'/'training'/'urban'/'street'
H, W = 4, 6


def png(path, arr, palette=False):
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(arr)
    im = Image.fromarray(a.astype(np.uint16 if a.ndim == 2 and a.max() > 255 else np.uint8))
    if palette: im = im.convert('P')
    im.save(path)
    return path


def jpg(path, h=H, w=W):
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
    return path


def sbd_mat(path, key, seg, cats=None):
    "An SBD .mat in the release's layout: struct GTcls (Segmentation, Boundaries, CategoriesPresent) or GTinst (.., Categories)."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    seg = np.asarray(seg, np.uint8)
    bnd = np.empty((20, 1), object)
    for k in range(20): bnd[k, 0] = scipy.sparse.csc_matrix((seg == k + 1).astype(float))  # not real boundaries; never read
    if key == 'GTcls': s = dict(Segmentation=seg, Boundaries=bnd, CategoriesPresent=np.unique(seg[seg > 0]).astype(np.uint8)[:, None])
    else: s = dict(Segmentation=seg, Boundaries=bnd[:max(int(seg.max()), 1)], Categories=np.asarray(cats, np.uint8)[:, None])
    scipy.io.savemat(path, {key: s}, oned_as='column')
    return path


# ---------------------------------------------------------------------------------------------- real fixtures
@needs_fx
def test_cityscapes_train_ids_equal_cityscapesscripts():
    from cityscapesscripts.helpers.labels import id2label
    ids = np.array(Image.open(CS_GT/f'{FRAME}_gtFine_labelIds.png'))
    table = {i: (255 if l.trainId in (255, -1) else l.trainId) for i, l in id2label.items()}
    expected = np.vectorize(table.__getitem__)(ids)
    s = CityscapesDataset(FX/'cityscapes', 'val')[0]
    assert s['mask'].dtype == np.uint8 and s['mask'].shape == ids.shape
    np.testing.assert_array_equal(s['mask'], expected)
    # the fixture's own labelTrainIds.png was downscaled separately upstream: it disagrees on exactly 77 px (MANIFEST)
    assert int((np.array(Image.open(CS_GT/f'{FRAME}_gtFine_labelTrainIds.png')) != expected).sum()) == 77


@needs_fx
def test_cityscapes_instances_equal_instance_ids():
    raw = np.array(Image.open(CS_GT/f'{FRAME}_gtFine_instanceIds.png')).astype(np.int64)
    s = CityscapesDataset(FX/'cityscapes', 'val')[0]
    assert s['inst'].dtype == np.int32
    thing = raw >= 1000
    np.testing.assert_array_equal(s['inst'][thing], raw[thing])
    assert (s['inst'][~thing] == 0).all()
    assert set(np.unique(s['inst'][thing]) // 1000) == {24, 26}                  # persons and cars (MANIFEST)
    assert CityscapesDataset(FX/'cityscapes', 'val', instances=False)[0].keys() == {'img', 'mask', 'void', 'name'}


@needs_fx
def test_voc_fixture_folder_split_and_split_file(tmp_path):
    root = FX/'voc_labelme'/'data_dataset_voc'
    ds = VOCDataset(root, split=None)
    assert [it['name'] for it in ds.items] == ['2011_000003', '2011_000006', '2011_000025']
    for i, it in enumerate(ds.items):
        s = ds[i]
        cls, obj = np.array(Image.open(it['mask'])), np.array(Image.open(it['inst']))  # palette indices, read independently
        np.testing.assert_array_equal(s['mask'], cls)                                  # VOC ids are the train ids; 255 kept
        np.testing.assert_array_equal(s['inst'], np.where(obj == 255, 0, obj))
        assert s['img'].shape[:2] == cls.shape
    assert 255 in ds[0]['mask']
    # with an ImageSets split file, in a copy
    copy = tmp_path/'VOCdevkit'/'VOC2012'
    shutil.copytree(root, copy)
    (copy/'ImageSets'/'Segmentation').mkdir(parents=True)
    (copy/'ImageSets'/'Segmentation'/'val.txt').write_text('2011_000025\n2011_000003\n')
    v = VOCDataset(tmp_path, 'val')
    assert [it['name'] for it in v.items] == ['2011_000025', '2011_000003']
    assert get_dataset('voc', tmp_path, 'val').items == v.items


@needs_fx
def test_coco_panoptic_fixture_segment_by_segment():
    cp = FX/'coco_panoptic'
    cats = json.loads((cp/'panoptic_coco_categories.json').read_text())
    train_of = {c['id']: i for i, c in enumerate(cats)}
    is_thing = {c['id']: bool(c['isthing']) for c in cats}
    ds = COCOPanopticDataset(json_path=cp/'sample_data/panoptic_examples.json', png_dir=cp/'sample_data/panoptic_examples',
                             img_dir=cp/'sample_data/input_images', categories=cp/'panoptic_coco_categories.json')
    anns = json.loads((cp/'sample_data/panoptic_examples.json').read_text())['annotations']
    assert len(ds) == len(anns) == 2
    n_crowd = 0
    for i, a in enumerate(anns):
        s = ds[i]
        rgb = np.array(Image.open(cp/'sample_data/panoptic_examples'/a['file_name'])).astype(np.int64)
        pid = rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]
        covered = np.zeros(pid.shape, bool)
        for g in a['segments_info']:
            px = pid == g['id']
            assert px.sum() == g['area']                                   # the json's own areas check the decoding
            assert (s['mask'][px] == train_of[g['category_id']]).all()
            want = g['id'] if is_thing[g['category_id']] and not g['iscrowd'] else 0
            assert (s['inst'][px] == want).all()
            n_crowd += g['iscrowd']
            covered |= px
        assert (s['mask'][~covered] == 255).all() and (s['inst'][~covered] == 0).all() and (pid[~covered] == 0).all()
        assert [g['train_id'] for g in s['segments']] == [train_of[g['category_id']] for g in a['segments_info']]
    assert n_crowd == 3


@needs_fx
def test_ade20k_full_fixture_classes_and_instances_match_json(tmp_path):
    ds = ADE20KFullDataset(FX/'ade20k_full', 'train')
    assert [it['name'] for it in ds.items] == ['ADE_train_00016869', 'ADE_train_00016900', 'ADE_train_00016964']
    for i, it in enumerate(ds.items):
        s = ds[i]
        objs = [o for o in json.loads(it['img'].with_suffix('.json').read_text())['annotation']['object'] if o['parts']['part_level'] == 0]
        cls, inst = s['full_cls'], s['inst']
        assert set(np.unique(cls)) - {0} == {o['name_ndx'] for o in objs}
        # one instance value per whole object, each inside one class
        pairs = np.unique(cls[inst > 0].astype(np.int64) * 256 + inst[inst > 0])
        assert len(pairs) == len(np.unique(inst[inst > 0])) == len(objs)
        per_class = dict(zip(*np.unique(pairs // 256, return_counts=True)))
        assert per_class == {k: sum(o['name_ndx'] == k for o in objs) for k in per_class}
        assert ((cls == 0) == (inst == 0)).all()
    m = tmp_path/'map.txt'; m.write_text('13 1831\n21 401\n')       # person, car: a two-line table, not the real one
    s = ADE20KFullDataset(FX/'ade20k_full', 'train', mapping=m)[0]
    np.testing.assert_array_equal(s['mask'], np.select([s['full_cls'] == 1831, s['full_cls'] == 401], [12, 20], 255))
    assert ds.class_names(0)[1831].startswith('person') and ds.class_names(0)[401].startswith('car')


@needs_fx
def test_folder_reads_mmseg_pseudo_dataset():
    kw = dict(img_dir='imgs', mask_dir='gts', img_suffix='_img', mask_suffix='_gt')
    ds = FolderDataset(FX/'mmseg_pseudo_dataset', 4, split=None, **kw)
    assert len(ds) == 5
    for i, it in enumerate(ds.items):
        np.testing.assert_array_equal(ds[i]['mask'], np.array(Image.open(it['mask'])))


# ---------------------------------------------------------------------------------------------- tiny trees
def test_sbd_mat_real_struct_layout(tmp_path):
    d = tmp_path/'benchmark_RELEASE'/'dataset'
    seg = np.array([[0, 15, 15], [0, 7, 0]])
    inst = np.array([[0, 1, 1], [0, 2, 0]])
    jpg(d/'img'/'2008_000002.jpg', 2, 3)
    sbd_mat(d/'cls'/'2008_000002.mat', 'GTcls', seg)
    sbd_mat(d/'inst'/'2008_000002.mat', 'GTinst', inst, cats=[15, 7])
    (d/'train.txt').write_text('2008_000002\n'); (d/'val.txt').write_text('')
    raw = scipy.io.loadmat(d/'cls'/'2008_000002.mat')['GTcls'][0, 0]       # the layout as MATLAB users index it
    assert set(raw.dtype.names) == {'Segmentation', 'Boundaries', 'CategoriesPresent'}
    s = SBDDataset(tmp_path, 'train')[0]
    np.testing.assert_array_equal(s['mask'], seg)
    np.testing.assert_array_equal(s['inst'], inst)
    assert s['inst'].dtype == np.int32 and s['mask'].dtype == np.uint8
    with pytest.raises(DataError, match="split 'val' is empty"): SBDDataset(tmp_path, 'val')
    scipy.io.savemat(d/'cls'/'2008_000002.mat', {'seg': seg})
    with pytest.raises(DataError, match=r"2008_000002\.mat: expected a MATLAB struct 'GTcls'"): load_sbd_mat(d/'cls'/'2008_000002.mat')
    sbd_mat(d/'cls'/'2008_000002.mat', 'GTcls', np.array([[0, 21, 0], [0, 0, 0]]))
    with pytest.raises(DataError, match=r"2008_000002\.mat: ids 21"): SBDDataset(tmp_path, 'train')[0]


def test_voc_aug_union_minus_val(tmp_path):
    voc, sbd = tmp_path/'VOCdevkit'/'VOC2012', tmp_path/'benchmark_RELEASE'/'dataset'
    for i in ['t1', 't2', 'v1']:
        jpg(voc/'JPEGImages'/f'{i}.jpg', 1, 2)
        png(voc/'SegmentationClass'/f'{i}.png', [[1, 255]], palette=True); png(voc/'SegmentationObject'/f'{i}.png', [[1, 255]], palette=True)
    for i in ['t2', 's1', 's2', 'v1']:
        jpg(sbd/'img'/f'{i}.jpg', 1, 2)
        sbd_mat(sbd/'cls'/f'{i}.mat', 'GTcls', [[3, 3]]); sbd_mat(sbd/'inst'/f'{i}.mat', 'GTinst', [[1, 1]], cats=[3])
    (voc/'ImageSets'/'Segmentation').mkdir(parents=True)
    (voc/'ImageSets'/'Segmentation'/'train.txt').write_text('t1\nt2\n'); (voc/'ImageSets'/'Segmentation'/'val.txt').write_text('v1\n')
    (sbd/'train.txt').write_text('s1\nt2\nv1\n'); (sbd/'val.txt').write_text('s2\n')
    ds = VOCAugDataset(tmp_path, tmp_path)
    assert [it['name'] for it in ds.items] == ['t1', 't2', 's1', 's2']
    assert [ds[i]['mask'].tolist() for i in range(4)] == [[[1, 255]], [[1, 255]], [[3, 3]], [[3, 3]]]
    assert [ds[i]['inst'].tolist() for i in range(4)] == [[[1, 0]], [[1, 0]], [[1, 1]], [[1, 1]]]
    with pytest.raises(ValueError, match='train_aug'): VOCAugDataset(tmp_path, tmp_path, split='val')


def test_cityscapes_gtcoarse(tmp_path):
    jpg(tmp_path/'leftImg8bit'/'train_extra'/'bonn'/'bonn_000000_000019_leftImg8bit.png')
    png(tmp_path/'gtCoarse'/'train_extra'/'bonn'/'bonn_000000_000019_gtCoarse_labelIds.png', np.full((H, W), 23))
    s = CityscapesDataset(tmp_path, 'train_extra', gt='gtCoarse', instances=False)[0]
    assert (s['mask'] == 10).all()                                              # sky
    with pytest.raises(ValueError, match="gt must be"): CityscapesDataset(tmp_path, 'train_extra', gt='gtMedium')


def test_mapillary_bird_instance_zero_is_kept(tmp_path):
    labels = [dict(name='animal--bird', readable='Bird', color=[1, 2, 3], instances=True, evaluate=True),
              dict(name='human--person', readable='Person', color=[4, 5, 6], instances=True, evaluate=True),
              dict(name='nature--sky', readable='Sky', color=[7, 8, 9], instances=False, evaluate=True),
              dict(name='void--unlabeled', readable='Unlabeled', color=[0, 0, 0], instances=False, evaluate=False)]
    (tmp_path/'config.json').write_text(json.dumps({'labels': labels}))
    lab = np.array([[0, 0, 1, 1, 2, 3]] * H)
    k = np.array([[0, 1, 0, 4, 0, 0]] * H)
    jpg(tmp_path/'training'/'images'/'x.jpg'); png(tmp_path/'training'/'labels'/'x.png', lab, palette=True)
    png(tmp_path/'training'/'instances'/'x.png', lab * 256 + k)
    s = get_dataset('mapillary', tmp_path, 'train')[0]
    assert s['mask'][0].tolist() == [0, 0, 1, 1, 2, 255]
    inst = s['inst'][0]
    assert inst[4] == inst[5] == 0 and len(set(inst[:4].tolist())) == 4 and (inst[:4] > 0).all()   # 4 distinct instances, bird 0 included


def test_coco_panoptic_standard_layout_and_unknown_segment(tmp_path):
    cats = [dict(id=1, name='person', isthing=1, color=[1, 1, 1]), dict(id=7, name='sky', isthing=0, color=[2, 2, 2])]
    segs = [dict(id=5, category_id=1, iscrowd=0, area=2, bbox=[0, 0, 2, 1]), dict(id=300, category_id=7, iscrowd=0, area=3, bbox=[0, 0, 3, 1]),
            dict(id=70000, category_id=1, iscrowd=1, area=1, bbox=[0, 0, 1, 1])]
    d = dict(images=[dict(id=9, file_name='000009.jpg', height=1, width=7)], categories=cats,
             annotations=[dict(image_id=9, file_name='000009.png', segments_info=segs)])
    (tmp_path/'annotations').mkdir(); (tmp_path/'annotations'/'panoptic_val2017.json').write_text(json.dumps(d))
    jpg(tmp_path/'val2017'/'000009.jpg', 1, 7)
    ids = np.array([5, 5, 300, 300, 300, 70000, 0])
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1)[None].astype(np.uint8)
    png(tmp_path/'annotations'/'panoptic_val2017'/'000009.png', rgb)     # the official zip's place
    s = COCOPanopticDataset(tmp_path, 'val')[0]
    assert s['mask'][0].tolist() == [0, 0, 1, 1, 1, 0, 255]
    assert s['inst'][0].tolist() == [5, 5, 0, 0, 0, 0, 0]                        # crowd and stuff: no instance
    ids[1] = 6
    png(tmp_path/'annotations'/'panoptic_val2017'/'000009.png', np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1)[None].astype(np.uint8))
    with pytest.raises(DataError, match=r"000009\.png: segment ids \[6\]"): COCOPanopticDataset(tmp_path, 'val')[0]
    png(tmp_path/'annotations'/'panoptic_val2017'/'000009.png', ids[None])    # single-channel: not an RGB id map
    with pytest.raises(DataError, match=r"000009\.png has mode"): COCOPanopticDataset(tmp_path, 'val')[0]
    (tmp_path/'annotations'/'panoptic_val2017.json').write_text('{"images": [')
    with pytest.raises(DataError, match=r"cannot parse .*panoptic_val2017\.json"): COCOPanopticDataset(tmp_path, 'val')
    with pytest.raises(FileNotFoundError, match=r"panoptic_train2017\.json"):
        COCOPanopticDataset(tmp_path, 'train', png_dir=tmp_path, img_dir=tmp_path)


def test_ade20k_full_rejects_bad_encoding(tmp_path):
    d = tmp_path/'ADE20K_2021_17_01'/'images'/'ADE'/'validation'/'x'
    jpg(d/'ADE_val_1.jpg', 1, 2)
    png(d/'ADE_val_1_seg.png', np.array([[[15, 3, 5], [0, 0, 0]]]))
    with pytest.raises(DataError, match='not multiples of 10'): ADE20KFullDataset(tmp_path, 'val')[0]
    png(d/'ADE_val_1_seg.png', np.array([[[10, 3, 0], [0, 0, 0]]]))
    with pytest.raises(DataError, match='instance 0'): ADE20KFullDataset(tmp_path, 'val')[0]
    png(d/'ADE_val_1_seg.png', np.array([[[10, 3, 7], [0, 0, 0]]]))
    s = ADE20KFullDataset(tmp_path, 'val')[0]
    assert s['full_cls'].tolist() == [[259, 0]] and s['inst'].tolist() == [[7, 0]]


# ---------------------------------------------------------------------------------------------- every error, every reader
def _one(fmt, root):
    "A one-image tree of `fmt` under `root`: how to build the reader, where its image and label are, how to empty the split."
    n = SimpleNamespace(kw={}, split='train', empty=None, layout='expected folder')
    if fmt == 'cityscapes':
        n.img = jpg(root/'leftImg8bit'/'train'/'c'/'c_000000_000001_leftImg8bit.png')
        n.label, n.good = root/'gtFine'/'train'/'c'/'c_000000_000001_gtFine_labelIds.png', 7
        n.kw = dict(instances=False)
    elif fmt == 'ade20k':
        n.img, n.label, n.good = jpg(root/'images'/'training'/'ADE_train_1.jpg'), root/'annotations'/'training'/'ADE_train_1.png', 1
    elif fmt in ('voc', 'pascal_context'):
        year, lab, sets = (('VOC2012', 'SegmentationClass', 'Segmentation') if fmt == 'voc' else
                           ('VOC2010', 'SegmentationClassContext', 'SegmentationContext'))
        v = root/'VOCdevkit'/year
        n.img, n.label, n.good = jpg(v/'JPEGImages'/'2008_000001.jpg'), v/lab/'2008_000001.png', 1
        (v/'ImageSets'/sets).mkdir(parents=True); (v/'ImageSets'/sets/'train.txt').write_text('2008_000001\n')
        n.empty = lambda: (v/'ImageSets'/sets/'train.txt').write_text('')
        if fmt == 'voc': n.kw = dict(instances=False)
    elif fmt == 'bdd100k':
        n.img, n.good = jpg(root/'bdd100k'/'images'/'10k'/'train'/'a.jpg'), 0
        n.label = root/'bdd100k'/'labels'/'sem_seg'/'masks'/'train'/'a.png'
    elif fmt == 'mapillary':
        root.mkdir(parents=True)
        (root/'config.json').write_text(json.dumps({'labels': [dict(name='a', readable='A', color=[0, 0, 0], instances=False, evaluate=True)]}))
        n.img, n.label, n.good, n.layout = jpg(root/'training'/'images'/'k.jpg'), root/'training'/'labels'/'k.png', 0, 'config not found'
        n.kw = dict(instances=False)
    elif fmt == 'folder':
        n.img, n.label, n.good, n.split = jpg(root/'images'/'a.jpg'), root/'masks'/'a.png', 1, None
        n.kw = dict(classes=['x', 'y'])
    n.empty = n.empty or (lambda: n.img.unlink())
    png(n.label, np.full((H, W), n.good))
    n.make = lambda r=root: get_dataset(fmt, r, n.split, **n.kw)
    return n

FORMATS = ['cityscapes', 'ade20k', 'voc', 'pascal_context', 'bdd100k', 'mapillary', 'folder']


@pytest.mark.parametrize('fmt', FORMATS)
def test_reader_errors(fmt, tmp_path):
    n = _one(fmt, tmp_path/'ds')
    s = n.make()[0]
    assert s['mask'].shape == (H, W) and s['mask'].dtype == np.uint8 and s['img'].shape == (H, W, 3)
    with pytest.raises(FileNotFoundError, match='root not found'): n.make(tmp_path/'missing')
    (tmp_path/'elsewhere').mkdir()
    with pytest.raises(FileNotFoundError, match=n.layout): n.make(tmp_path/'elsewhere')         # wrong layout
    png(n.label, np.full((H + 1, W), n.good))                                                     # size mismatch
    with pytest.raises(DataError, match=rf"{n.img.name} is {W}x{H} \(WxH\) but .*{n.label.name} is {W}x{H + 1}"): n.make()[0]
    png(n.label, np.full((H, W), 200))                                                            # values outside the spec
    with pytest.raises(DataError, match=rf"{n.label.name}: (ids|values) 200"): n.make()[0]
    png(n.label, np.zeros((H, W, 3)))                                                             # colour mask
    with pytest.raises(DataError, match=rf"{n.label.name} is an RGB colour image"): n.make()[0]
    n.label.write_bytes(b'\x89PNG\r\n\x1a\n broken')                                              # corrupt
    with pytest.raises(DataError, match=rf"cannot read .*{n.label.name}"): n.make()[0]
    n.label.unlink()                                                                              # missing label
    with pytest.raises(FileNotFoundError, match=rf"{n.img.name} has no label file: expected .*{n.label.name}"): n.make()
    n.empty()                                                                                     # empty split
    with pytest.raises(DataError, match='is empty'): n.make()


def test_allow_unlabeled_yields_samples_without_mask(tmp_path):
    jpg(tmp_path/'bdd100k'/'images'/'10k'/'test'/'t.jpg')
    with pytest.raises(FileNotFoundError, match='allow_unlabeled'): BDD100KDataset(tmp_path, 'test')
    s = BDD100KDataset(tmp_path, 'test', allow_unlabeled=True)[0]
    assert set(s) == {'img', 'name'}


def test_get_dataset_knows_every_reader(tmp_path):
    import boundaryseg.data.synthetic  # noqa: F401  (registers the built-in synthetic dataset)
    assert set(DATASETS) == {'cityscapes', 'ade20k', 'ade20k_full', 'voc', 'sbd', 'voc_aug', 'pascal_context', 'bdd100k',
                             'mapillary', 'coco_panoptic', 'folder', 'synthetic'}
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"): get_dataset('kitti', tmp_path)
    _one('pascal_context', tmp_path)
    assert get_dataset('pascal_context_59', tmp_path, 'train').spec.n_classes == 59
    assert get_dataset('pascal_context_60', tmp_path, 'train').spec.n_classes == 60
