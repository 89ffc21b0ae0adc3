#!/usr/bin/env python
"""Convert between a percent-format script (`# %%` code cells, `# %% [markdown]` cells) and a clean .ipynb.

    python tools/pct2nb.py nbs/12_models.necks.py            # writes nbs/12_models.necks.ipynb
    python tools/pct2nb.py nbs/12_models.necks.ipynb out.py  # back to percent format for editing

The notebooks are the source of truth; the percent file is only a convenient way to write one.
Markdown cells keep their text with the leading '# ' of each line removed."""
import hashlib, json, os, re, sys, tempfile
from pathlib import Path

def _md_lines(lines):
    return [l[2:] if l.startswith('# ') else ('' if l.rstrip() == '#' else l) for l in lines]

def pct2nb(src, dst):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        while buf and not buf[-1].strip(): buf.pop()
        while buf and not buf[0].strip(): buf.pop(0)
        text = '\n'.join(_md_lines(buf) if kind == 'markdown' else buf)
        # deterministic ids (nbformat 4.5): exports name cells by id, so random ids would change the library on every run
        cid = hashlib.sha1(f'{len(cells)}:{text}'.encode()).hexdigest()[:8]
        cell = dict(cell_type=kind, id=cid, metadata={}, source=text)
        if kind == 'code': cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    for line in Path(src).read_text().splitlines():
        m = re.match(r'^# %%(.*)$', line)
        if m:
            flush()
            kind, buf = ('markdown' if '[markdown]' in m.group(1) else 'code'), []
        elif kind is not None: buf.append(line)
    flush()
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
              nbformat=4, nbformat_minor=5)
    fd, tmp = tempfile.mkstemp(dir=Path(dst).parent, suffix='.tmp')
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, 'w') as f: json.dump(nb, f, indent=1, ensure_ascii=False); f.write('\n')
    os.replace(tmp, dst)

def nb2pct(src, dst):
    nb, out = json.loads(Path(src).read_text()), []
    for c in nb['cells']:
        text = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'markdown':
            out.append('# %% [markdown]'); out += ['# ' + l if l else '#' for l in text.splitlines()]
        else:
            out.append('# %%'); out += text.splitlines()
        out.append('')
    Path(dst).write_text('\n'.join(out))

if __name__ == '__main__':
    src = Path(sys.argv[1])
    if src.suffix == '.ipynb': nb2pct(src, sys.argv[2] if len(sys.argv) > 2 else src.with_suffix('.py'))
    else: pct2nb(src, sys.argv[2] if len(sys.argv) > 2 else src.with_suffix('.ipynb'))
