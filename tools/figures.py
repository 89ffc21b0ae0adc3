#!/usr/bin/env python
"""Reproduce the figures the closing notes cite, from the library's own functions.

    .venv/bin/python tools/figures.py data [--out figures/data]   # synthetic batch (image, mask, boundaries,
                                                                 # instances, super-pixels) + per-class boundary maps
"""
import argparse, json, sys
import matplotlib
matplotlib.use('Agg')

def data(out):
    from boundaryseg.vis import data_report
    print(json.dumps(data_report(out), indent=1))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('what', choices=['data'])
    p.add_argument('--out', default=None)
    a = p.parse_args()
    {'data': data}[a.what](a.out or f'figures/{a.what}')
