#!/usr/bin/env python
"""Render notebooks to HTML with nbconvert: a look at the docs on machines where Quarto cannot be installed.

    python tools/render_docs.py                                  # every notebook under nbs/ -> _docs_html/ (git-ignored)
    python tools/render_docs.py nbs/01b_data.synthetic.ipynb     # paths or globs
    python tools/render_docs.py nbs/01b*.ipynb --screenshot /tmp/shots   # and a screenshot of each page (1280 wide)

Each notebook goes through nbdev's doc processors first (FilterDefaults, what `nbdev_docs` hands Quarto: `#| hide`
cells dropped, show_doc run), then what Quarto would do (the title on top, `#| echo: false` inputs hidden), then
nbconvert's HTML exporter. Quarto-only markdown ({target=...} attributes, callouts) shows as text; offline, no MathJax.
Per notebook it prints the figure outputs the notebook commits and the figures its page shows (<img>, inline <svg>);
it exits 1 if a page shows fewer (e.g. a figure in a `#| hide` cell) or nbdev's processing fails (nbdev_docs would too).
nbdev re-runs a cell that mixes imports with other code (its "Found cells containing imports" warning) and shows that
run's outputs, not the committed ones.

--screenshot DIR needs Chromium, which is not part of `make test`: `apt-get update && apt-get install -y chromium` (root).
DIR must be outside the repository."""
import argparse, glob, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path
import nbformat
from execnb.nbio import mk_cell, nb2str, read_nb
from fastcore.xtras import working_directory
from nbconvert import HTMLExporter
from PIL import Image, ImageChops
from nbdev.doclinks import nbglob
from nbdev.processors import FilterDefaults

root = Path(__file__).resolve().parents[1]
out_dir = root/'_docs_html'
CHROMIUM = ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync']

def committed_figures(fn):
    "The image outputs notebook `fn` commits."
    return sum(bool({'image/png', 'image/svg+xml'} & o.get('data', {}).keys())
               for c in json.loads(Path(fn).read_text(encoding='utf-8'))['cells'] for o in c.get('outputs', []))

def as_quarto_shows(nb):
    "Do to nbdev's processed notebook `nb` what Quarto does and nbconvert does not: title on top, `#| echo: false` inputs hidden."
    fm = getattr(nb, 'frontmatter_', {})
    if fm: nb.cells[0] = mk_cell(f"# {fm.get('title', '')}\n\n> {fm.get('description', '')}", 'markdown')  # was the YAML frontmatter
    for c in nb.cells:
        if c.cell_type != 'code': continue
        if re.search(r'^#\|\s*echo:\s*false', c.source, re.M): c.metadata['transient'] = {'remove_source': True}
        c.source = re.sub(r'^#\|.*\n?', '', c.source, flags=re.M)  # the Quarto options nbdev leaves for Quarto

def render(fn):
    "Write the page of notebook `fn` under _docs_html/; its path and the number of figures it shows."
    fn = Path(fn).resolve()
    nb = read_nb(fn)
    with working_directory(fn.parent): FilterDefaults()(nb)
    as_quarto_shows(nb)
    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(nbformat.reads(nb2str(nb), as_version=4))
    dst = (out_dir/fn.relative_to(root/'nbs')).with_suffix('.html')
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(html, encoding='utf-8')
    return dst, len(re.findall(r'<img\b', html)) + len(re.findall(r'<svg\b', html))

def screenshot(page, png, size):
    "Take a headless-Chromium screenshot of `page` into `png` (fresh profile), trimmed below the page's end; is the page cut?"
    profile = tempfile.mkdtemp(prefix='chromium-')
    try:
        r = subprocess.run(CHROMIUM + [f'--user-data-dir={profile}', f'--screenshot={png}', f'--window-size={size}', page.as_uri()],
                           capture_output=True, text=True, timeout=180)
    finally: shutil.rmtree(profile, ignore_errors=True)
    if not Path(png).exists(): sys.exit(f'chromium made no screenshot of {page}:\n{r.stderr[-2000:]}')
    im = Image.open(png).convert('RGB')
    bottom = ImageChops.difference(im, Image.new('RGB', im.size, im.getpixel((0, im.height - 1)))).getbbox()[3]
    im.crop((0, 0, im.width, min(bottom + 24, im.height))).save(png)
    return bottom >= im.height  # a page taller than the window has a scrollbar down to the last row

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('paths', nargs='*', help='notebooks or globs (default: all notebooks under nbs/)')
    p.add_argument('--screenshot', metavar='DIR', type=Path, help='write a screenshot of each page to DIR/NAME.png')
    p.add_argument('--size', default='1280,12000', help='screenshot window WIDTH,HEIGHT, trimmed to the page (default 1280,12000)')
    a = p.parse_args()
    fns = sorted({f for g in a.paths for f in glob.glob(g, recursive=True)}) if a.paths else sorted(os.path.relpath(f) for f in nbglob())
    if not fns: sys.exit('no notebooks matched')
    if a.screenshot:
        if a.screenshot.resolve().is_relative_to(root): sys.exit(f'{a.screenshot}: screenshots go outside the repository')
        a.screenshot.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(root))  # show_doc imports this checkout's package, not an installed one
    bad = []
    for fn in fns:
        try: page, shown = render(fn)
        except Exception as e:  # nbdev_docs would fail on it too: say why and go on
            bad.append(fn)
            print(f'{fn}: FAILED in nbdev\'s doc processing: {e}\n  caused by {e.__cause__!r}', file=sys.stderr, flush=True)
            continue
        n = committed_figures(fn)
        if shown < n: bad.append(fn)
        print(f'{fn}: {n} figure outputs, {shown} in {page.relative_to(root)}' + ('  <- FEWER' if shown < n else ''), flush=True)
        if a.screenshot and screenshot(page, a.screenshot/f'{Path(fn).stem}.png', a.size):
            print('  the page is taller than the window: its screenshot is cut (try --size 1280,16000)')
    if a.screenshot: print(f'screenshots in {a.screenshot}')
    sys.exit(1 if bad else 0)
