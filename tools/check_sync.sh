#!/usr/bin/env bash
# Fails if nbdev_export or nbdev_clean would change anything: the exported library must equal what the
# notebooks export, and the notebooks must be clean; README.md and nbs/sidebar.yml must be what the notebooks say.
# Works on a copy, so it needs no git and leaves the tree as found.
set -euo pipefail
snap=$(mktemp -d)
trap 'rm -rf "$snap"' EXIT
cp -r boundaryseg nbs "$snap"/
nbdev_export
nbdev_clean
if ! diff -r -q -x __pycache__ -x .ipynb_checkpoints "$snap/boundaryseg" boundaryseg || \
   ! diff -r -q -x __pycache__ -x .ipynb_checkpoints -x _proc "$snap/nbs" nbs; then
  echo "OUT OF SYNC: nbdev_export/nbdev_clean changed the files above. Run them, review, and commit." >&2
  exit 1
fi
python tools/nb2readme.py --check
python tools/sidebar.py --check
echo "notebooks and library in sync"
