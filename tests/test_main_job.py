"""The main job's configurations through the console script: `--config fast` (ImageNet EfficientNet-Lite0, validation
only after the last epoch, an ETA line, the unlearned-classes table) and `--config long` (the previous job), tiny
budgets; bad `--pretrained` / `--config` values are one-line errors before any data is generated."""
import csv, json, re, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'


def run(*args, cwd=None, timeout=1200):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_bad_options_are_one_line_errors(tmp_path):
    for args, want in ((('--pretrained', 'imagenet'), "--pretrained: 'imagenet' is neither a weights file nor a registered weight source"),
                       (('--config', 'huge'), "--config: unknown config 'huge'; choose from fast, long"),
                       (('--backbone', 'resnet18'), "weight source 'efficientnet-lite0' holds 'tf_efficientnet_lite0' weights, not 'resnet18'")):
        r = run('main', '--out', tmp_path/'r', '--root', tmp_path/'synth', *args, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.strip().startswith('boundaryseg: error: ') and want in r.stderr, (args, r.stderr[-1500:])
    assert not (tmp_path/'synth').exists()  # refused before generating data


def test_fast_config_tiny(tmp_path):
    r = run('main', '--out', tmp_path/'report', '--root', tmp_path/'synth', '--epochs', 3, '--n_train', 4, '--n_val', 2,
            '--size', '64,128', '--bs', 2, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    met = json.loads((tmp_path/'report'/'metrics.json').read_text())
    c = met['config']
    assert (c['config'], c['arch'], c['backbone'], c['pretrained'], c['output_stride'], c['width']) == \
           ('fast', 'deeplabv3plus', 'tf_efficientnet_lite0', 'efficientnet-lite0', 32, 64)
    assert c['boundary_head'] == 'casenet' and c['steps'] == 6 and c['valid_every'] == 0 and 0 <= met['edge']['mf_ods'] <= 1
    assert c['flip'] is True and c['class_uniform'] == 0  # evaluated with the left-right flip; uniform crops
    assert re.search(r'^ETA: \d+\.\d\d s per step, 2 steps left: .*\(plus one validation pass after the last epoch\)', r.stdout, re.M), r.stdout[-2000:]
    assert 'classes still unlearned (IoU < 0.5):' in r.stdout or 'every class present reaches IoU 0.5' in r.stdout
    assert all({'cls', 'iou', 'share', 'width', 'why'} <= set(u) for u in met['unlearned'])
    rows = list(csv.DictReader(open(tmp_path/'report'/'train'/'history.csv')))
    assert len(rows) == 3 and rows[0]['valid_loss'] in ('', 'None', 'nan') and float(rows[2]['valid_loss']) > 0, rows


def test_long_config_tiny(tmp_path):
    r = run('main', '--config', 'long', '--out', tmp_path/'report', '--root', tmp_path/'synth', '--epochs', 3, '--n_train', 4,
            '--n_val', 2, '--size', '64,128', '--bs', 2, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    c = json.loads((tmp_path/'report'/'metrics.json').read_text())['config']
    assert (c['arch'], c['backbone'], c['pretrained'], c['width'], c['recipe'], c['valid_every']) == \
           ('fastfcn_psp', 'resnet18', False, 128, 'main_long', 1)
    assert c['flip'] is False  # the previous job, as it was
    # 6 steps, timed on steps 2-4; the validation after epoch 2 is timed and one more follows: the ETA counts it
    assert re.search(r'^ETA: \d+\.\d\d s per step, 2 steps left: .*\(plus a validation pass after every epoch\)', r.stdout, re.M), r.stdout[-2000:]
    assert re.search(r'ETA: a validation pass takes \d+\.\d s and 1 more follows: training ends in about \d+\.\d min '
                     r'\(2 steps and 1 validation\), then the evaluation', r.stdout, re.M), r.stdout[-2000:]


def test_lovasz_softmax_is_the_jaccard_loss_at_hard_predictions():
    "The fifth screening's Lovasz-softmax term (experiments/main_job_tuning.py): at one-hot predictions it equals 1 - the mean IoU of the classes present, counted here pixel by pixel."
    import importlib.util, torch
    spec = importlib.util.spec_from_file_location('main_job_tuning', Path(__file__).resolve().parents[1]/'experiments'/'main_job_tuning.py')
    mj = importlib.util.module_from_spec(spec); spec.loader.exec_module(mj)
    g = torch.Generator().manual_seed(0)
    y, pred = torch.randint(0, 5, (2, 16, 16), generator=g), torch.randint(0, 5, (2, 16, 16), generator=g)
    y[0, :2] = 255  # ignored
    logits = torch.nn.functional.one_hot(pred, 5).permute(0, 3, 1, 2).float() * 100
    keep, ious = y != 255, []
    for c in range(5):
        a, b = (pred == c) & keep, (y == c) & keep
        if b.any(): ious.append(((a & b).sum() / (a | b).sum()).item())
    assert abs(mj.lovasz_softmax(logits, y, 255).item() - (1 - sum(ious) / len(ious))) < 1e-5
    assert mj.lovasz_softmax(torch.nn.functional.one_hot(y.clamp(max=4), 5).permute(0, 3, 1, 2).float() * 100, y, 255).item() < 1e-5  # perfect: 0
