#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does, without Quarto, which cannot be installed everywhere).

    python tools/nb2readme.py          # write README.md
    python tools/nb2readme.py --check  # fail if README.md is not what index.ipynb says

Markdown cells are copied; the `> subtitle` line stays a quote; code cells marked `#| hide` are skipped and other
code cells become python blocks."""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def render(nb_path=root/'nbs'/'index.ipynb'):
    nb, parts = json.loads(Path(nb_path).read_text()), []
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'markdown': parts.append(src.strip())
        elif not src.lstrip().startswith('#| hide'):
            parts.append('```python\n' + '\n'.join(l for l in src.strip().splitlines() if not l.startswith('#|')) + '\n```')
    return '<!-- Generated from nbs/index.ipynb by tools/nb2readme.py: edit the notebook, not this file. -->\n\n' + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(), root/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit('README.md is out of step with nbs/index.ipynb: run `python tools/nb2readme.py`')
        print('README.md in step with nbs/index.ipynb')
    else: readme.write_text(text)
