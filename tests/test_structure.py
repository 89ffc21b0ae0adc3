"""The package's structure: no import cycles between its modules, counting imports inside functions too (a module that
imports one that imports it back, at any depth, is a cycle); lazily imported optional third-party packages are not
modules of the package and do not count."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1]/'boundaryseg'


def import_graph(pkg=PKG):
    "module -> set of package modules it imports (anywhere in its file)."
    mods = {}
    for f in pkg.rglob('*.py'):
        if f.name == '_modidx.py': continue
        parts = f.relative_to(pkg.parent).with_suffix('').parts
        mods['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = f
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        is_pkg = f.name == '__init__.py'
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import): targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = m.split('.')[:len(m.split('.')) - node.level + (1 if is_pkg else 0)] if node.level else []
                mod = '.'.join(base + ([node.module] if node.module else []))
                targets = [mod] + [f'{mod}.{a.name}' for a in node.names]
            else: continue
            for t in targets:
                while t and t not in mods: t = t.rpartition('.')[0]
                if t and t != m and not m.startswith(t + '.'): graph[m].add(t)
    return graph


def cycles(graph):
    "Strongly connected components of more than one module (Tarjan)."
    idx, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        idx[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in graph[v]:
            if w not in idx: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in graph:
        if v not in idx: visit(v)
    return out


def test_finder_sees_a_cycle(tmp_path):
    "The check itself: a two-module package whose second module imports the first inside a function is a cycle."
    p = tmp_path/'pkg'
    p.mkdir()
    (p/'__init__.py').write_text('')
    (p/'a.py').write_text('from .b import g\n')
    (p/'b.py').write_text('def g():\n    from pkg.a import g\n')
    (p/'c.py').write_text('import numpy\nfrom . import a\n')
    assert cycles(import_graph(p)) == [['pkg.a', 'pkg.b']]


def test_no_import_cycles():
    g = import_graph()
    assert len(g) > 30 and 'boundaryseg.models.registry' in g['boundaryseg.models.zoo']
    assert cycles(g) == []
