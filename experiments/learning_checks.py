"""Learning checks: every registered architecture and add-on fits one fixed batch of synthetic scenes.

Each check builds its model with `seg_model` defaults (only the width made small), trains it with `seg_learner` (the
architecture's own loss terms and weights) for `--steps` steps on the same batch, then scores it in eval mode on that
batch: mIoU for `seg` outputs, MF-ODS for `edge` outputs (classes present in the batch), PQ for the panoptic model. A
check passes when every score reaches its level (LEVELS) and every parameter tensor trained (none frozen, each got a
non-zero gradient at some step: a fit by the head alone does not hide a backbone that never learns). Two controls must fail, so that the check is shown to tell
learning from not learning: DeepLabV3+ whose decode head's output is detached (its `seg` logits never get a gradient)
and DeepLabV3+ on a frozen random backbone. An add-on that cannot apply to an architecture (∇M fusion on Two-Stream, whose
`edge` is not the decode head's) must refuse with a clear error: that check passes when the error says why.

    python experiments/learning_checks.py                          # all checks -> experiments/results/learning_checks.json
    python experiments/learning_checks.py --only fcn control_detached --out /tmp/lc.json
    python experiments/learning_checks.py --device cuda --steps 300 # the same checks on a GPU

Setup: `seg_dataloaders('synthetic')` on 64x128 scenes, the first `--bs` training images without augmentation; timm's
`test_resnet` backbone (a ResNet of 8-64 channels, random init), head width 32; one optimiser for every check (the
`main_long` recipe's AdamW and poly decay at lr 1e-2, no class weights, fp32) so that a check measures whether the architecture and
its loss terms learn, not whether a paper's learning rate suits a from-scratch tiny backbone. Results are appended one by
one (a killed run resumes; `--redo` recomputes).
"""
import argparse, json, platform, tempfile, time, traceback, warnings
from pathlib import Path
import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE/'results'/'learning_checks.json'
# A score counts as learnt at these levels (on the batch it trained on); at init every model scores near 0 (see the JSON)
LEVELS = {'miou': 0.5, 'mf_ods': 0.4, 'pq': 0.3}
EDGE_PROTOCOL = 'sbd-thin'  # full resolution, thinned GT and predictions, tolerance 0.02 x diagonal (2.9 px at 64x128)


def _checks():
    "name -> dict(arch, kw (seg_model options), kind ('arch', 'addon', 'control'), expect ('pass' or 'fail'))."
    import boundaryseg.models.zoo  # noqa: F401 (registers every architecture and add-on)
    from boundaryseg.models.registry import ARCHS, ADDONS
    out = {n: dict(arch=n, kw={}, kind='arch', expect='pass') for n in ARCHS}
    addons = {'boundary_head': [('deeplabv3plus', {'boundary_head': 'casenet'})],
              # on RPCNet's own head the add-on sets the fusion's options (here: ∇M detached from the boundary loss); on a
              # joint model whose `edge` does not come from the decode head (SBCB+ Two-Stream) it cannot apply
              'grad_fusion': [('rpcnet', {'grad_fusion': {'detach': True}}), ('deeplabv3plus_twostream', {'grad_fusion': True})],
              'duality': [('fcn', {'duality': 1.})]}
    missing = sorted(set(ADDONS) - set(addons))
    if missing: raise SystemExit(f"learning_checks: add-on(s) {missing} have no check: add them to `addons`")
    for a, cfgs in addons.items():
        for arch, kw in cfgs: out[f'{arch}+{a}'] = dict(arch=arch, kw=kw, kind='addon', expect='pass')
    # ∇M fusion reads `seg` and `edge` of the decode head: on Two-Stream it must refuse, naming why (checked, not trained)
    out['deeplabv3plus_twostream+grad_fusion'].update(expect='refuse', refuse="needs both 'seg' and 'edge' from the decode head")
    # FastFCN-PSP and FastFCN-DeepLabV3 (JPU + their heads) reach mIoU 0.477 / 0.482 on the batch at 120 steps and
    # 0.520 / 0.535 at 240 (measured): their stated budget is twice the others'
    for n in ('fastfcn_psp', 'fastfcn_deeplabv3'):
        if n in out: out[n]['steps_x'] = 2
    # Seamless at the check's scale: the paper's anchors (scale 8: 32..512 px on P2..P6) and stuff-area threshold (4096 px
    # at 1024x2048) are Cityscapes' sizes. On 64x128 frames no P6 anchor lies inside the image (its conv never trains)
    # and no stuff region reaches 4096 px (PQ_st = 0 whatever the model). Anchors of scale 1 (4..64 px) with the synthetic
    # configuration's ratios, and the threshold scaled with the image area (16 px at 64x128), as bench/seamless_synthetic.py does.
    if 'seamless' in out: out['seamless'].update(kw=dict(anchor_scale=1., ratios=(1 / 3, 0.5, 1., 2., 3.)), scale_stuff_area=True)
    out['control_detached'] = dict(arch='deeplabv3plus', kw={}, kind='control', expect='fail', control='detached')
    out['control_frozen'] = dict(arch='deeplabv3plus', kw={}, kind='control', expect='fail', control='frozen')
    return out


class DetachedHead(nn.Module):
    "A decode head whose outputs carry no gradient (the control that cannot learn its `seg` logits)."
    def __init__(self, head): super().__init__(); self.head = head
    def forward(self, *args): return {k: v.detach() for k, v in self.head(*args).items()}


def _control(model, kind):
    if kind == 'detached': model.head = DetachedHead(model.head)
    elif kind == 'frozen':
        for p in model.backbone.parameters(): p.requires_grad_(False)
    return model


def fixed_batch(root, bs, size, device, inputs=()):
    "DataLoaders whose training and validation loaders both give the same `bs` scenes, unaugmented."
    from boundaryseg.data.block import seg_dataloaders
    return seg_dataloaders('synthetic', root, size=size, bs=bs, val_bs=bs, scale=None, flip=False, photometric=False,
                           targets=('mask', 'inst', 'void'), inputs=inputs, n_train=bs, n_val=bs, image_size=size,
                           valid_split='train', device=device, seed=0)


def batch_scores(model, xb, ys, spec, tasks, binary_edge=False):
    "Scores of `model` (eval mode) on one batch: mIoU (`seg`), MF-ODS over the classes present (`edge`), PQ (`panoptic`)."
    from boundaryseg.metrics.semantic import confusion_matrix, seg_scores
    from boundaryseg.metrics.sbd import SBDMetrics
    from boundaryseg.metrics.panoptic import PanopticMetrics
    from boundaryseg.data.boundaries import eval_boundaries
    was = model.training
    model.eval()
    with torch.no_grad(): out = model(*xb)
    model.train(was)
    mask, inst, void = (ys[k].as_subclass(torch.Tensor).cpu() for k in ('mask', 'inst', 'void'))
    C, s = spec.n_classes, {}
    if 'semantic' in tasks: s['miou'] = seg_scores(confusion_matrix(out['seg'].float().cpu(), mask, C))['miou']
    if 'boundary' in tasks:
        gt = eval_boundaries(mask, C, 'thin', inst=inst, void=void, scale=1.0, thing_ids=spec.thing_ids.tolist())
        p = torch.sigmoid(out['edge'].float().cpu())
        if binary_edge: gt = gt.amax(1, keepdim=True)
        m = SBDMetrics(gt.shape[1], EDGE_PROTOCOL, thresholds=33)
        m.update(p, gt)
        e = m.scores()
        present = np.asarray(gt).reshape(len(gt), gt.shape[1], -1).sum((0, 2)) > 0
        s['mf_ods'] = float(e['ods_f'][present].mean())
        s['mf_ods_all'] = float(e['mf_ods'])  # absent classes counted as 0 (pyEdgeEval's mean)
    if 'panoptic' in tasks:
        m = PanopticMetrics(spec.thing)
        m.count_batch(out['panoptic'].cpu(), dict(mask=mask, inst=inst))
        r = m.scores()
        s.update(pq=float(r['pq']), pq_th=float(r['pq_th']), pq_st=float(r['pq_st']))
    return {k: round(float(v), 4) for k, v in s.items()}


def run_check(name, cfg, steps, device, root, bs, size, width, lr):
    from fastai.callback.core import Callback, CancelValidException
    from boundaryseg.core import set_seed
    from boundaryseg.learner import seg_learner
    from boundaryseg.models.registry import arch_spec, seg_model
    from boundaryseg.panoptic.fusion import scaled_stuff_area

    class SkipValid(Callback):
        "Training steps only: the batch is scored once at the end."
        def before_validate(self): raise CancelValidException

    class GradSeen(Callback):
        "Which parameter tensors ever received a non-zero gradient."
        def before_fit(self): self.seen = {n: False for n, p in self.learn.model.named_parameters() if p.requires_grad}
        def after_backward(self):
            for n, p in self.learn.model.named_parameters():
                if n in self.seen and not self.seen[n] and p.grad is not None and bool(p.grad.ne(0).any()): self.seen[n] = True

    spec_a = arch_spec(cfg['arch'])
    set_seed(0)
    dls = fixed_batch(root, bs, size, device, spec_a.inputs)
    kw = dict(cfg['kw'], width=width)
    if cfg.get('scale_stuff_area'): kw['min_stuff_area'] = scaled_stuff_area(size)
    if 'thing' in spec_a.defaults: kw['thing'] = dls.spec.thing.tolist()
    model = _control(seg_model(cfg['arch'], backbone='test_resnet', n_classes=dls.spec.n_classes, **kw), cfg.get('control'))
    tasks = model.spec.tasks
    binary = 'edge' in model.spec.outputs and model.spec.losses.get('edge', ('',))[0] == 'binary_edge'
    with tempfile.TemporaryDirectory() as d:
        learn = seg_learner(dls, model=model, recipe='main_long', path=d, checkpoint=None, metrics=[], lr=lr, class_weight=None,
                            mixed_precision=False, cbs=[SkipValid(), gs := GradSeen()])
        b = dls.valid.one_batch()
        n_inp = len(dls.input_names)
        xb, ys = b[:n_inp], dict(zip(dls.target_names, b[n_inp:]))
        init = batch_scores(learn.model, xb, ys, dls.spec, tasks, binary)
        t = time.time()
        with learn.no_bar(), learn.no_logging(), warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter('always')
            learn.fit(steps)
        secs = time.time() - t
        losses = [float(v) for v in learn.recorder.losses]
        final = batch_scores(learn.model, xb, ys, dls.spec, tasks, binary)
        lb = getattr(learn, 'loss_balance', None)  # seg_learner's loss-balance monitor (every 50 steps)
        balance = {t: dict(share=round(float(np.nanmedian([r['share'] for r in lb.rows if r['term'] == t])), 4),
                           cos=round(float(np.nanmedian([r['cos'] for r in lb.rows if r['term'] == t])), 3))
                   for t in dict.fromkeys(r['term'] for r in lb.rows)} if lb is not None and lb.rows else {}
        warned = [str(w.message) for w in ws if 'loss term' in str(w.message)]
    levels = {k: LEVELS[k] for k in ('miou', 'mf_ods', 'pq') if k in final}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    dead = [n for n, s in gs.seen.items() if not s]  # trainable, but never a non-zero gradient in `steps` steps
    fits = all(final[k] >= v for k, v in levels.items())
    passed = fits and not frozen and not dead
    return dict(name=name, arch=cfg['arch'], options=cfg['kw'], kind=cfg['kind'], control=cfg.get('control'), tasks=list(tasks),
                loss_terms=list(learn.loss_func.weights) if hasattr(learn.loss_func, 'weights') else None,
                params=sum(p.numel() for p in model.parameters()), steps=steps, init=init, final=final, levels=levels,
                fits=fits, n_frozen=len(frozen), n_dead=len(dead), frozen=_prefixes(frozen), dead=_prefixes(dead),
                n_param_tensors=len(list(model.parameters())), passed=passed, expect=cfg['expect'], ok=passed == (cfg['expect'] == 'pass'),
                balance=balance, balance_warnings=warned, loss_first=round(losses[0], 4), loss_last=round(float(np.mean(losses[-5:])), 4), train_s=round(secs, 1))


def _prefixes(names, depth=3):
    "Parameter names shortened to their first `depth` dotted parts, with counts (a readable list of what did not train)."
    out = {}
    for n in names:
        k = '.'.join(n.split('.')[:depth])
        out[k] = out.get(k, 0) + 1
    return out


def table(results) -> str:
    "Markdown table of the checks: architecture, steps, scores at init and after training, level, verdict."
    rows = ['| check | kind | steps | score | init | final | level | untrained tensors | verdict |', '|---|---|---:|---|---:|---:|---:|---:|---|']
    for r in results:
        if 'error' in r:
            v = 'refused, as it must' if r['ok'] else '**defect**'
            rows.append(f"| {r['name']} | {r['kind']} | {r['steps']} | error | | | | | {v}: {r['error'][:90]} |")
            continue
        un = f"{r['n_frozen'] + r['n_dead']}/{r['n_param_tensors']}"
        for i, (k, lv) in enumerate(r['levels'].items()):
            v = ('pass' if r['passed'] else 'FAIL') + ('' if r['ok'] else ' (**unexpected**)') + (' (control, must fail)' if r['expect'] == 'fail' else '')
            rows.append(f"| {r['name'] if not i else ''} | {r['kind'] if not i else ''} | {r['steps'] if not i else ''} | {k} | "
                        f"{r['init'][k]:.3f} | {r['final'][k]:.3f} | {lv} | {'' if i else un} | {v if not i else ''} |")
    return '\n'.join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--only', nargs='*', help='check names (default: all; see --list)')
    ap.add_argument('--list', action='store_true', help='print the check names and exit')
    ap.add_argument('--steps', type=int, default=120)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--bs', type=int, default=2)
    ap.add_argument('--size', type=int, nargs=2, default=[64, 128])
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--lr', type=float, default=1e-2)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--root', default='data/synthetic_64x128_lc', help='folder of the generated synthetic scenes')
    ap.add_argument('--out', default=str(DEFAULT_OUT))
    ap.add_argument('--redo', action='store_true', help='recompute checks already in --out')
    ap.add_argument('--merge', nargs='*', help='JSON files of partial runs (e.g. two processes with different --only) to join into --out')
    a = ap.parse_args(argv)
    warnings.filterwarnings('ignore', category=FutureWarning)
    torch.set_num_threads(a.threads)
    checks = _checks()
    if a.list: return print('\n'.join(checks))
    names = a.only or list(checks)
    bad = [n for n in names if n not in checks]
    if bad: raise SystemExit(f"learning_checks: unknown check(s) {bad}; known: {', '.join(checks)}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = dict(steps=a.steps, bs=a.bs, size=a.size, width=a.width, lr=a.lr, backbone='test_resnet', recipe='main_long (AdamW, poly, fp32, no class weights; lr from --lr)',
                 device=a.device, levels=LEVELS, edge_protocol=EDGE_PROTOCOL, data='synthetic, first bs training scenes, unaugmented',
                 torch=torch.__version__, machine=platform.processor() or platform.machine())
    data = json.loads(out.read_text()) if out.exists() else {}
    def steps_of(n): return a.steps * checks[n].get('steps_x', 1) if n in checks else a.steps  # the check's stated budget
    res = {r['name']: r for r in data.get('results', []) if r.get('steps') == steps_of(r['name'])}
    for f in a.merge or []:
        part = json.loads(Path(f).read_text())
        if part['setup'] != setup: raise SystemExit(f"learning_checks: {f} was run with another setup: {part['setup']} (this: {setup})")
        res.update({r['name']: r for r in part['results']})
    if a.merge is not None:
        out.write_text(json.dumps(dict(setup=setup, results=[res[k] for k in checks if k in res]), indent=1))
        return print(table([res[k] for k in checks if k in res]))
    for n in names:
        if n in res and not a.redo: continue
        t = time.time()
        try: r = run_check(n, checks[n], steps_of(n), a.device, a.root, a.bs, tuple(a.size), a.width, a.lr)
        except Exception as e:  # an architecture that cannot train a batch is a result (a defect), not a crash of the script
            c = checks[n]
            r = dict(name=n, arch=c['arch'], kind=c['kind'], steps=steps_of(n), expect=c['expect'],
                     ok=c['expect'] == 'refuse' and c['refuse'] in str(e), error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-2000:])
        else:
            if checks[n]['expect'] == 'refuse': r['ok'] = False  # it trained where it should have refused
        r['wall_s'] = round(time.time() - t, 1)
        res[n] = r
        order = [k for k in checks if k in res]
        out.write_text(json.dumps(dict(setup=setup, results=[res[k] for k in order]), indent=1))
        print(json.dumps({k: r.get(k) for k in ('name', 'final', 'passed', 'ok', 'train_s', 'error')}), flush=True)
    print(table([res[k] for k in checks if k in res]))


if __name__ == '__main__':
    main()
