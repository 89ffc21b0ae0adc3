"""Boundary ground truth the way pyEdgeEval (the code behind SBCB's on-the-fly targets) computes it.

Runs in the isolated reference environment (`.venv-ref/bin/python`); the library never imports pyEdgeEval.
Usage: `python ref_boundary_gt.py jobs.json`, jobs.json = {"jobs": [job, ...]}; each job writes the .npy it names.

ops
- `edges`: `edge_tools.loop_mask2edge` / `loop_instance_mask2edge` (what `OTFSeg2MultiLabelEdge` calls) on label maps
  `in` (.npz: `mask` (N,H,W), optional `inst` (N,H,W)); one-hot over `labels`, `ignore` = positions in `labels`,
  `inst_labels` turns instance sensitivity on; `radius`, `use_cv2`. Output (N, len(labels), H, W) uint8.
- `protocol`: Cityscapes evaluation GT of one labelIds (+ instanceIds) PNG pair: `convert_label_to_semantic_edges`
  writes the RGB-encoded PNG, `load_scaled_edge` + `decode_png` read it back as the evaluators do. Output (19,h,w).
- `thin`: `preprocess.binary_thin` on each (H,W) slice of `in` (.npy).
"""
import json, os, shutil, sys, tempfile

import numpy as np

from pyEdgeEval.common.multi_label import decode_png, load_scaled_edge
from pyEdgeEval.edge_tools import loop_instance_mask2edge, loop_mask2edge
from pyEdgeEval.helpers.convert_cityscapes import convert_label_to_semantic_edges
from pyEdgeEval.preprocess import binary_thin
from pyEdgeEval.utils import mask2onehot


def op_edges(j):
    d = np.load(j['in'])
    out = []
    for i, m in enumerate(d['mask']):
        oh = mask2onehot(m, labels=j['labels'])
        kw = dict(mask=oh, ignore_indices=j['ignore'], radius=j['radius'], use_cv2=j['use_cv2'])
        if j.get('inst_labels'): e = loop_instance_mask2edge(inst_mask=d['inst'][i], inst_labelIds=j['inst_labels'], **kw)
        else: e = loop_mask2edge(**kw)
        out.append(e)
    np.save(j['out'], np.stack(out).astype(np.uint8))


def op_protocol(j):
    tmp = tempfile.mkdtemp()
    try:
        d = os.path.join(tmp, 'gtFine', 'val', 'city')
        os.makedirs(d)
        shutil.copy(j['label'], os.path.join(d, 'x_gtFine_labelIds.png'))
        if j.get('inst'): shutil.copy(j['inst'], os.path.join(d, 'x_gtFine_instanceIds.png'))
        convert_label_to_semantic_edges(os.path.join(d, 'x_gtFine_labelIds.png'), inst_sensitive=bool(j.get('inst')),
                                        edge_suffix='_edge.png', radius=j['radius'], thin=j['thin'], scale=j['convert_scale'])
        edge, _ = load_scaled_edge(os.path.join(tmp, 'gtEval', 'val', 'city', 'x_edge.png'), j['eval_scale'])
        np.save(j['out'], decode_png(edge, 19))
    finally:
        shutil.rmtree(tmp)


def op_thin(j):
    x = np.load(j['in'])
    np.save(j['out'], np.stack([binary_thin(s) for s in x.reshape(-1, *x.shape[-2:])]).reshape(x.shape).astype(np.uint8))


if __name__ == '__main__':
    for job in json.load(open(sys.argv[1]))['jobs']:
        {'edges': op_edges, 'protocol': op_protocol, 'thin': op_thin}[job['op']](job)
