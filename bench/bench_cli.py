"""Start-up of the `boundaryseg` console script: seconds for `--help`, each command's `--help` and a refused option,
against the import of what the commands need to run (torch + fastai.vision.all + the library's model zoo), which is
what every one of these took before the command line checked and helped without importing them. Same process, same
machine, interleaved; median of `--reps` runs each. The goal (issue 20): under 1.5 s.

    python bench/bench_cli.py [--reps 3]"""
import argparse, json, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT/'.venv'/'bin'/'boundaryseg'
PROBES = {'boundaryseg --help': ['--help'], 'boundaryseg train --help': ['train', '--help'], 'boundaryseg eval --help': ['eval', '--help'],
          'boundaryseg predict --help': ['predict', '--help'], 'boundaryseg main --help': ['main', '--help'],
          'boundaryseg train --arch nope': ['train', '--arch', 'nope'], 'boundaryseg train --epochs 0': ['train', '--epochs', '0']}
BASELINE = [sys.executable, '-c', 'import torch, fastai.vision.all, boundaryseg.models.zoo']


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--reps', type=int, default=3)
    a = ap.parse_args()
    times = {k: [] for k in [*PROBES, 'baseline: import torch + fastai + zoo']}
    for _ in range(a.reps):
        for k, v in PROBES.items(): times[k].append(timed([str(EXE), *v]))
        times['baseline: import torch + fastai + zoo'].append(timed(BASELINE))
    base = statistics.median(times['baseline: import torch + fastai + zoo'])
    res = {k: dict(seconds=round(statistics.median(v), 3), vs_baseline=round(statistics.median(v) / base, 3)) for k, v in times.items()}
    print(json.dumps(res, indent=1))
