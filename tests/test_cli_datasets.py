"""Every dataset `--help` lists, through `train`, `eval` and `predict` from the command line, on the fixtures that hold
its layout (tests/../shared/fixtures): Cityscapes (tests/test_cli_runs.py), the synthetic set (tests/test_cli.py), and
here `folder`, `coco_panoptic`, `ade20k_full` and `voc`, each with the reader options it needs (`--data_opt`). The model
files carry the dataset's label spec, so `predict` takes no `--spec`. The other readers (ade20k, sbd, voc_aug,
pascal_context, bdd100k, mapillary) have no fixture of their layout; tests/test_datasets.py reads them from made-up
trees, and they take the same path through the command line."""
import json, shutil, subprocess
from pathlib import Path
import numpy as np
import pytest

from boundaryseg.core import fixtures_path, load_ids
from conftest import cli_run

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'
FX = fixtures_path()
TINY = ['--arch', 'fcn', '--backbone', 'test_resnet', '--size', '32,32', '--bs', '1', '--width', '8', '--epochs', '1']


def run(*args, cwd=None):
    "The console script in a child forked from this process (conftest.cli_run: a process of its own, torch already imported)."
    return cli_run(*args, cwd=cwd, timeout=900)


def ade_mapping(path):
    "A `mapFromADE.txt`-style file mapping the three most frequent full-index classes of the fixture to challenge classes 1..3."
    from boundaryseg.data.datasets import get_dataset
    ds = get_dataset('ade20k_full', FX/'ade20k_full', 'train')
    full = ds[0]['full_cls']
    top = [int(i) for i in np.argsort(np.bincount(full.ravel()))[::-1][:3] if i > 0]
    path.write_text('\n'.join(f'{k + 1} {i}' for k, i in enumerate(top)) + '\n')
    return path


def data_args(name, tmp):
    "(--data ... options, the image folder for predict) for each dataset fixture."
    if name == 'folder':
        root = tmp/'folder'
        shutil.copytree(FX/'mmseg_pseudo_dataset'/'imgs', root/'images')
        shutil.copytree(FX/'mmseg_pseudo_dataset'/'gts', root/'masks')
        shutil.copytree(FX/'mmseg_pseudo_dataset'/'splits', root/'splits')
        vals = sorted({int(v) for f in (root/'masks').glob('*.png') for v in np.unique(load_ids(f))})
        return (['--data', 'folder', '--root', root, '--data_opt', f'classes={max(vals) + 1}', '--data_opt', 'img_suffix=_img',
                 '--data_opt', 'mask_suffix=_gt'], root/'images')
    if name == 'coco_panoptic':
        s = FX/'coco_panoptic'/'sample_data'
        return (['--data', 'coco_panoptic', '--root', FX/'coco_panoptic', '--data_opt', f"json_path={s/'panoptic_examples.json'}", '--data_opt', f"png_dir={s/'panoptic_examples'}",
                 '--data_opt', f"img_dir={s/'input_images'}", '--data_opt', f"categories={FX/'coco_panoptic'/'panoptic_coco_categories.json'}"],
                s/'input_images')
    if name == 'ade20k_full':  # the 2200x1650 images at 1/4 size (nearest for the class maps): 150-class logits at full size need GBs
        from PIL import Image
        src, root = FX/'ade20k_full'/'ADE20K_2021_17_01'/'images'/'ADE'/'training'/'urban'/'street', tmp/'ade'
        dst = root/'ADE20K_2021_17_01'/'images'/'ADE'/'training'/'urban'/'street'
        dst.mkdir(parents=True)
        for f in src.glob('*.jpg'):
            for g, rs in ((f, Image.BILINEAR), (f.with_name(f'{f.stem}_seg.png'), Image.NEAREST)):
                im = Image.open(g)
                im.resize((im.width // 4, im.height // 4), rs).save(dst/g.name, quality=95)
        return (['--data', 'ade20k_full', '--root', root, '--data_opt', f"mapping={ade_mapping(tmp/'map.txt')}"], dst)
    if name == 'voc':
        root = FX/'voc_labelme'/'data_dataset_voc'
        (tmp/'ids.txt').write_text('\n'.join(sorted(p.stem for p in (root/'SegmentationClass').glob('*.png'))) + '\n')
        return ['--data', 'voc', '--root', root, '--data_opt', f"split_file={tmp/'ids.txt'}"], root/'JPEGImages'


@pytest.mark.parametrize('name', ['folder', 'coco_panoptic', 'ade20k_full', 'voc'])
def test_dataset_through_the_cli(name, tmp_path):
    args, images = data_args(name, tmp_path)
    splits = ['--splits', 'train,train'] if name == 'ade20k_full' else []  # the fixture holds training images only
    r = run('train', *args, *splits, *TINY, '--out', tmp_path/'run', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    split = ['--split', 'train'] if name == 'ade20k_full' else []
    r = run('eval', tmp_path/'run'/'model.pth', *args, *split, '--out', tmp_path/'ev', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert 0 <= m['miou'] <= 1 and m['n_images'] >= 1
    pattern = '*.jpg' if name == 'ade20k_full' else '*'  # ADE keeps its class maps (_seg.png) beside the images
    r = run('predict', tmp_path/'run'/'model.pth', images, '--pattern', pattern, '--out', tmp_path/'pr', cwd=tmp_path)  # no --spec: the model's
    assert r.returncode == 0, r.stderr[-3000:]
    n = len([p for p in images.glob(pattern) if p.suffix.lower() in ('.jpg', '.png')])
    assert len(list((tmp_path/'pr'/'labelIds').glob('*.png'))) == n > 0


def test_dataset_errors_name_the_option(tmp_path):
    "A reader option that is missing or unknown, or a reader that yields no class masks, is one line naming it."
    r = run('train', '--data', 'folder', '--root', tmp_path, *TINY, '--out', tmp_path/'r', cwd=tmp_path)
    assert r.returncode == 2 and '--data folder needs --data_opt classes=' in r.stderr, r.stderr[-2000:]
    r = run('train', '--data', 'cityscapes', '--root', tmp_path, '--data_opt', 'n_train=3', *TINY, '--out', tmp_path/'r', cwd=tmp_path)
    assert r.returncode == 2 and "the cityscapes reader has no option 'n_train'" in r.stderr, r.stderr[-2000:]
    r = run('eval', tmp_path/'m.pth', '--data', 'ade20k_full', '--root', FX/'ade20k_full', '--split', 'train', cwd=tmp_path)
    assert r.returncode == 2 and 'no class masks' in r.stderr and r.stderr.count('\n') == 1, r.stderr[-2000:]
