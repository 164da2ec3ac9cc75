#!/usr/bin/env python
"""Time to accuracy, step one: training images/s of every model the lessons train, per Keras backend and batch size.

For each model (`MODELS`), backend (`BACKENDS`: TensorFlow with `jit_compile` off and on, JAX, PyTorch when it
imports) and batch size, one subprocess (a backend cannot change inside a process) builds the lesson's model,
times `train_on_batch` on random inputs (the first step, which compiles, apart from the steady ones) and the
lesson's input pipeline (`fermusic.train.ArrayDataset` or Han's `MultimodalDataset`, with the lesson's
augmentation) per batch. Each measurement has a time cap; a capped one keeps the steps it finished. FLOPs per
training image come from XLA's cost analysis of the lowered JAX training step (forward, backward and optimizer
update, as `jax.jit(step).lower(...).cost_analysis()` counts them: 2 per multiply-add, 1 per element-wise op);
achieved GFLOP/s are set against the CPU's FP32 peak (`cpu_peak`). The results go into one run record
(paper 'kit', name 'benchmark-throughput'); `markdown_table` turns it into the README's table.

    python benchmarks/throughput.py         # everything, on an idle machine: a full-profile record
    python benchmarks/throughput.py --quick --models cnn8-7x7 --backends tensorflow jax   # a tiny check
    python benchmarks/throughput.py --table results/full/kit/benchmark-throughput__....json

--quick (2 timed batches of one small batch size) writes a quick-profile record (git-ignored); without it, a full one.
Timings depend on what else the machine runs: the record stores the load average before and after.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path
import numpy as np

HERE = Path(__file__).resolve().parent
# name: (module, builder expression, pipeline kind, augmentation of the lesson)
MODELS = {
    'cnn8-7x7': ('fermusic.cnn8', "cnn8('7x7')", 'array48', dict(rotation=10, translation=0.1, flip=True)),
    'cnn8-3x3': ('fermusic.cnn8', "cnn8('3x3')", 'array48', dict(rotation=10, translation=0.1, flip=True)),
    'shinde-cnn-48': ('fermusic.resnet', 'custom_cnn(48)', 'array48', dict(rotation=10, zoom=0.1, translation=0.1)),
    'shinde-resnet50-48': ('fermusic.resnet', 'resnet50(48, weights=None)', 'array48', dict(rotation=10, zoom=0.1, translation=0.1)),
    'han-fusion': ('fermusic.multimodal', "fusion_model(('image', 'landmarks', 'hog'))", 'multimodal', None),
    'han-image': ('fermusic.multimodal', "fusion_model(('image',))", 'multimodal', None),
    'han-image+landmarks': ('fermusic.multimodal', "fusion_model(('image', 'landmarks'))", 'multimodal', None),
    'han-image+hog': ('fermusic.multimodal', "fusion_model(('image', 'hog'))", 'multimodal', None),
    'han-vgg16': ('fermusic.multimodal', "app_baseline('vgg16')", 'array48', dict(rotation=10, translation=0.1)),
    'ugochukwu-d2-128': ('fermusic.hparams', 'ugochukwu_cnn(2, size=128)', 'array128rgb', 'report'),
    'compact': ('fermusic.compact', 'compact_cnn()', 'array48', dict(rotation=10, translation=0.1, zoom=0.1, flip=True)),
}
BACKENDS = ('tensorflow', 'tensorflow-xla', 'jax', 'torch')

# --- the machine's peak -----------------------------------------------------------------------------------

def cpu_peak(cpuinfo:str|None=None, # text of /proc/cpuinfo (default: read it)
             cores:int|None=None, # usable cores (default: this process's CPU affinity)
             fma_units:int=2, # FMA pipes per core: 2 on server Xeon cores with AVX-512 and on Zen 4/5 (an assumption: cpuinfo does not say)
            ) -> dict:
    "FP32 peak GFLOP/s = cores x clock x SIMD lanes x 2 (FMA) x FMA units, from /proc/cpuinfo's flags and clock."
    text = cpuinfo if cpuinfo is not None else Path('/proc/cpuinfo').read_text()
    flags = set(next((l.split(':', 1)[1].split() for l in text.splitlines() if l.startswith('flags')), []))
    mhz = [float(l.split(':', 1)[1]) for l in text.splitlines() if l.startswith('cpu MHz')]
    model = next((l.split(':', 1)[1].strip() for l in text.splitlines() if l.startswith('model name')), '?')
    lanes = 16 if 'avx512f' in flags else 8 if 'avx2' in flags or 'avx' in flags else 4
    fma = 2 if 'fma' in flags or 'avx512f' in flags else 1
    if cores is None:
        try: cores = len(os.sched_getaffinity(0))
        except AttributeError: cores = os.cpu_count() or 1
    ghz = (max(mhz) if mhz else 0.) / 1000
    return dict(gflops=cores * ghz * lanes * fma * fma_units, cores=cores, ghz=ghz, fp32_lanes=lanes, fma=fma == 2,
                fma_units=fma_units, cpu=model, amx_bf16='amx_bf16' in flags,
                how=f'{cores} cores x {ghz:.2f} GHz (cpuinfo "cpu MHz", the base clock; turbo not counted) x {lanes} FP32 lanes '
                    f'({"AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE"}) x {fma} (FMA) x {fma_units} FMA units per core (assumed)')

# --- one measurement, in its own process ----------------------------------------------------------------

def _inputs(model, batch, rng):
    "Random inputs of the model's shapes, pixel-valued for images."
    def one(t):
        shp = (batch, *t.shape[1:])
        return rng.integers(0, 256, shp).astype('float32') if len(shp) == 4 else rng.normal(size=shp).astype('float32')
    ins = model.inputs
    return {t.name: one(t) for t in ins} if len(ins) > 1 or model.name.startswith('fusion') else one(ins[0])

def _pipeline(kind, aug, batch, rng):
    "The lesson's input pipeline on random faces: a dataset whose items are training batches."
    from fermusic.train import ArrayDataset, augmentation
    n = batch * 4
    if kind == 'multimodal':
        from fermusic.multimodal import MultimodalDataset, HAN_FULL
        from fermusic.faces import hog_features
        x = rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)
        pts = np.stack([rng.uniform(8, 40, (n, 68)), rng.uniform(8, 40, (n, 68))], -1).astype('float32')
        hog = hog_features(x, progress=False, **HAN_FULL['hog'])
        return MultimodalDataset(x, pts, hog, rng.integers(0, 7, n), batch_size=batch, shuffle=True, augment=True,
                                 rotation=HAN_FULL['rotation'], translation=HAN_FULL['translation'], hog_params=HAN_FULL['hog'])
    if kind == 'array128rgb':
        from fermusic.hparams import REPORT_AUGMENT
        x, aug = rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8), REPORT_AUGMENT
    else: x = rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)
    return ArrayDataset(x, rng.integers(0, 7, n), batch_size=batch, shuffle=True, augment=augmentation(**aug, seed=0))

def worker(job:dict, result:Path):
    "Run one job ({'kind': 'train'|'flops', model, backend, batch, steps, warmup}); write what it measured to `result` as it goes."
    res = dict(job, steps_s=[], pipeline_s=[], status='started')
    save = lambda: result.write_text(json.dumps(res))
    name, backend = job['model'], job['backend']
    import importlib, keras
    from fermusic.config import set_seed, thread_count
    set_seed(0, deterministic=False)
    mod, expr, kind, aug = MODELS[name]
    m = importlib.import_module(mod)
    model = eval(expr, vars(m))
    res.update(params=model.count_params(), threads=thread_count(), keras_backend=keras.backend.backend())
    rng = np.random.default_rng(0); b = job['batch']
    x, y = _inputs(model, b, rng), rng.integers(0, 7, b)
    if job['kind'] == 'flops':
        res.update(_flops(model, x, y)); res['status'] = 'done'; save(); return
    if backend.startswith('tensorflow'):
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=['accuracy'], jit_compile=backend == 'tensorflow-xla')
    save()
    t0 = time.perf_counter(); model.train_on_batch(x, y); res['first_step_s'] = time.perf_counter() - t0; save()
    for i in range(job['warmup'] + job['steps']):
        t0 = time.perf_counter(); model.train_on_batch(x, y); dt = time.perf_counter() - t0
        if i >= job['warmup']: res['steps_s'].append(dt); save()
    np.asarray(model.predict_on_batch(x) if not isinstance(x, dict) else model.predict_on_batch(x))
    t0 = time.perf_counter(); np.asarray(model.predict_on_batch(x)); res['predict_s'] = time.perf_counter() - t0; save()
    ds = _pipeline(kind, aug, b, rng)
    ds[0]
    for i in range(1, min(len(ds), 1 + job['steps'])):
        t0 = time.perf_counter(); ds[i]; res['pipeline_s'].append(time.perf_counter() - t0)
    res['status'] = 'done'; save()

def _flops(model, x, y) -> dict:
    "FLOPs per image of the forward pass and of the whole training step, from XLA's cost analysis (JAX backend)."
    import jax, keras
    loss_fn, opt = keras.losses.SparseCategoricalCrossentropy(), model.optimizer
    opt.build(model.trainable_variables)
    tv, ntv, ov = ([v.value for v in vs] for vs in (model.trainable_variables, model.non_trainable_variables, opt.variables))
    def step(tv, ntv, ov, x, y):
        def lf(tv):
            p, ntv2 = model.stateless_call(tv, ntv, x, training=True); return loss_fn(y, p), ntv2
        (l, ntv2), g = jax.value_and_grad(lf, has_aux=True)(tv)
        return opt.stateless_apply(ov, g, tv), ntv2, l
    cost = lambda lowered: (lambda c: (c[0] if isinstance(c, list) else c).get('flops'))(lowered.cost_analysis())
    n = len(y)
    train = cost(jax.jit(step).lower(tv, ntv, ov, x, y))
    fwd = cost(jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x)[0]).lower(tv, ntv, x))
    return dict(train_flops_per_image=train / n, forward_flops_per_image=fwd / n,
                flops_how='XLA HLO cost analysis of the lowered JAX step (jax.jit(step).lower(...).cost_analysis())')

def measure(job:dict, cap:float) -> dict:
    "Run `job` in a subprocess with its backend, stopped after `cap` seconds; returns what it measured."
    import tempfile
    env = dict(os.environ, KERAS_BACKEND='tensorflow' if job['backend'].startswith('tensorflow') else job['backend'])
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)/'result.json'
        cmd = [sys.executable, str(Path(__file__).resolve()), '--worker', json.dumps(job), '--result', str(out)]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try: log, _ = p.communicate(timeout=cap); status = None
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9); log, _ = p.communicate(); status = f'capped at {cap:.0f} s'
        res = json.loads(out.read_text()) if out.exists() else dict(job)
    res['wall_s'] = time.perf_counter() - t0
    if status: res['status'] = status
    elif p.returncode: res.update(status=f'failed (exit {p.returncode})', error=log.strip().splitlines()[-1:] if log else [])
    return summarise(res)

def summarise(r:dict) -> dict:
    "Images/s and per-batch times from a job's raw timings."
    b = r.get('batch') or 1
    if r.get('steps_s'):
        step = float(np.median(r['steps_s'])); r['step_s'] = step; r['train_images_per_s'] = b / step
    if r.get('pipeline_s'):
        pipe = float(np.median(r['pipeline_s'])); r['pipeline_s_per_batch'] = pipe
        if r.get('step_s'): r['with_pipeline_images_per_s'] = b / (r['step_s'] + pipe)   # fit runs the PyDataset on its own thread
    if r.get('predict_s'): r['inference_images_per_s'] = b / r['predict_s']
    return r

# --- the whole benchmark ------------------------------------------------------------------------------

def _backend_ok(backend:str) -> bool:
    mod = {'tensorflow': 'tensorflow', 'tensorflow-xla': 'tensorflow', 'jax': 'jax', 'torch': 'torch'}[backend]
    import importlib.util
    return importlib.util.find_spec(mod) is not None

def run(models, backends, batches, steps:int, warmup:int, cap:float, log=print) -> dict:
    "Every (model, backend, batch) measurement plus each model's FLOPs; returns {'flops': {...}, 'runs': [...], 'peak': {...}}."
    peak = cpu_peak(); out = dict(peak=peak, flops={}, runs=[], skipped=[])
    for m in models:
        f = measure(dict(kind='flops', model=m, backend='jax', batch=2, steps=0, warmup=0), cap) if _backend_ok('jax') else {}
        out['flops'][m] = {k: f.get(k) for k in ('train_flops_per_image', 'forward_flops_per_image', 'params', 'status', 'flops_how')}
        gf = f.get('train_flops_per_image')
        log(f"{m}: {gf / 1e9 if gf else float('nan'):.2f} GFLOP per training image ({f.get('status')})")
        for be in backends:
            if not _backend_ok(be):
                if f'{be}: not installed' not in out['skipped']: out['skipped'].append(f'{be}: not installed')
                continue
            for b in batches:
                r = measure(dict(kind='train', model=m, backend=be, batch=b, steps=steps, warmup=warmup), cap)
                if gf and r.get('train_images_per_s'):
                    r['gflops_per_s'] = r['train_images_per_s'] * gf / 1e9; r['peak_fraction'] = r['gflops_per_s'] / peak['gflops']
                out['runs'].append(r)
                log(f"  {be:14s} batch {b:4d}: " + (f"train {r['train_images_per_s']:.1f} img/s" if r.get('train_images_per_s') else 'no step')
                    + (f", first step {r['first_step_s']:.1f} s" if r.get('first_step_s') else '')
                    + (f", pipeline {r['pipeline_s_per_batch'] * 1e3:.0f} ms/batch vs step {r['step_s'] * 1e3:.0f} ms" if r.get('pipeline_s_per_batch') and r.get('step_s') else '')
                    + (f", {r['gflops_per_s']:.0f} GFLOP/s ({r['peak_fraction']:.0%} of peak)" if r.get('gflops_per_s') else '')
                    + f" [{r.get('status')}]")
    return out

def markdown_table(rec:dict, # a 'benchmark-throughput' record (or its `results`)
                   placeholder:bool=False, # label the table as not a real measurement
                  ) -> str:
    "The README's table: one row per (model, backend, batch), with FLOPs, images/s, GFLOP/s and the pipeline's share."
    res = rec.get('results', rec)
    fmt = lambda v, f: '-' if v is None else format(v, f)
    share = lambda r: '' if r.get('peak_fraction') is None else f" ({r['peak_fraction']:.0%})"
    rows = ['| model | GFLOP / training image | backend | batch | train images/s | first step s | pipeline ms / batch | step ms '
            '| images/s with pipeline | GFLOP/s (of peak) | status |', '|' + ' --- |' * 11]
    for r in res['runs']:
        gf = (res['flops'].get(r['model']) or {}).get('train_flops_per_image')
        rows.append(f"| {r['model']} | {fmt(gf and gf / 1e9, '.2f')} | {r['backend']} | {r['batch']} | {fmt(r.get('train_images_per_s'), '.1f')} "
                    f"| {fmt(r.get('first_step_s'), '.1f')} | {fmt(r.get('pipeline_s_per_batch') and r['pipeline_s_per_batch'] * 1e3, '.0f')} "
                    f"| {fmt(r.get('step_s') and r['step_s'] * 1e3, '.0f')} | {fmt(r.get('with_pipeline_images_per_s'), '.1f')} "
                    f"| {fmt(r.get('gflops_per_s'), '.0f')}{share(r)} | {r.get('status')} |")
    head = ('**Placeholder: to be measured on an idle machine.** The numbers below come from a tiny test run '
            '(`--quick`, 2 timed batches, on a machine busy with other work) and only show the table\'s form.\n\n') if placeholder else ''
    return head + '\n'.join(rows) + _foot(rec)

def _foot(rec:dict) -> str:
    "The tables' footnote: the peak and how it was had, how FLOPs were counted, the machine, its load."
    res = rec.get('results', rec); p, hw = res['peak'], rec.get('hardware') or {}
    fmt = lambda v, f: '-' if v is None else format(v, f)
    return (f"\n\nPeak: {p['gflops']:.0f} GFLOP/s FP32 = {p['how']}. FLOPs: {next(iter(res['flops'].values()), {}).get('flops_how') or 'not measured'}. "
            f"Machine: {hw.get('cpu', p['cpu'])}, {rec.get('date', (rec.get('started') or '')[:10])}; "
            f"load average before/after {fmt((rec.get('load_average_before') or [None])[0], '.1f')}/{fmt((rec.get('load_average_after') or [None])[0], '.1f')}."
            + (f" Skipped: {'; '.join(res['skipped'])}." if res.get('skipped') else ''))

def summary_table(rec:dict, # a 'benchmark-throughput' record
                  ) -> str:
    "The README's short table: per model, each backend's best images/s (and its batch), the fastest setting and where its time goes."
    res = rec.get('results', rec)
    backends = list(dict.fromkeys(r['backend'] for r in res['runs']))
    rows = ['| model | GFLOP / training image | ' + ' | '.join(f'{b} images/s (batch)' for b in backends)
            + ' | fastest | its GFLOP/s (of peak) | its step / pipeline ms per batch |', '|' + ' --- |' * (len(backends) + 5)]
    for m in dict.fromkeys(r['model'] for r in res['runs']):
        runs = [r for r in res['runs'] if r['model'] == m and r.get('train_images_per_s')]
        best = lambda rs: max(rs, key=lambda r: r['train_images_per_s']) if rs else None
        cell = lambda r: '-' if r is None else (f"{r['train_images_per_s']:.1f} ({r['batch']})"
                                                + ('' if r.get('status') == 'done' else '*'))
        f, gf = best(runs), (res['flops'].get(m) or {}).get('train_flops_per_image')
        pipe = f and f.get('pipeline_s_per_batch')
        rows.append(f"| {m} | {'-' if not gf else format(gf / 1e9, '.2f')} | "
                    + ' | '.join(cell(best([r for r in runs if r['backend'] == b])) for b in backends)
                    + (f" | {f['backend']}, batch {f['batch']}" if f else ' | -')
                    + (f" | {f['gflops_per_s']:.0f} ({f['peak_fraction']:.0%})" if f and f.get('gflops_per_s') else ' | -')
                    + (f" | {f['step_s'] * 1e3:.0f} / {pipe * 1e3:.0f} |" if f and pipe else ' | - |'))
    capped = any(r.get('status') != 'done' for r in res['runs'])
    return ('\n'.join(rows) + ('\n\n\\* capped: stopped by the per-measurement time limit; images/s from the steps it '
                               'finished.' if capped else '') + _foot(rec))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    ap.add_argument('--backends', nargs='+', default=list(BACKENDS), choices=list(BACKENDS))
    ap.add_argument('--batches', nargs='+', type=int, default=[32, 64, 128])
    ap.add_argument('--steps', type=int, default=10, help='timed batches per measurement')
    ap.add_argument('--warmup', type=int, default=2, help='untimed batches after the first (compiling) one')
    ap.add_argument('--cap', type=float, default=600., help='seconds per measurement before it is stopped')
    ap.add_argument('--quick', action='store_true', help='2 timed batches, 1 warm-up, batch 16, 240 s cap; a quick-profile record')
    ap.add_argument('--no-save', action='store_true', help='print only, write no record')
    ap.add_argument('--table', default=None, help='print the Markdown table of this record and exit')
    ap.add_argument('--placeholder', action='store_true', help='with --table: label the table as a placeholder')
    ap.add_argument('--summary', action='store_true', help="with --table: the README's short table, one row per model")
    ap.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--result', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker: return worker(json.loads(a.worker), Path(a.result))
    if a.table:
        rec = json.loads(Path(a.table).read_text())
        print(summary_table(rec) if a.summary else markdown_table(rec, a.placeholder)); return
    if a.quick:
        a.steps, a.warmup, a.cap = 2, 1, min(a.cap, 240.)
        if a.batches == [32, 64, 128]: a.batches = [16]
    from fermusic.records import recording
    params = dict(models=a.models, backends=a.backends, batches=a.batches, steps=a.steps, warmup=a.warmup, cap_s=a.cap, quick=a.quick)
    with recording('benchmark-throughput', paper='kit', seed=0, profile='quick' if a.quick else 'full', params=params,
                   dataset=dict(name='synthetic', note='random pixels and features: speed does not depend on content'),
                   save=not a.no_save) as rec:
        rec.load_average_before = os.getloadavg()
        rec.results = run(a.models, a.backends, a.batches, a.steps, a.warmup, a.cap)
        rec.load_average_after = os.getloadavg()
        best = {}
        for r in rec.results['runs']:
            if r.get('train_images_per_s') and r['train_images_per_s'] > best.get(r['model'], {}).get('train_images_per_s', 0): best[r['model']] = r
        rec.metrics = {f'{m}_best_train_images_per_s': r['train_images_per_s'] for m, r in best.items()}
        rec.fastest = {m: dict(backend=r['backend'], batch=r['batch'], train_images_per_s=r['train_images_per_s']) for m, r in best.items()}
        rec.notes.append(f"{os.cpu_count()} CPU cores visible; load average before/after {rec.load_average_before[0]:.2f}/"
                         f"{os.getloadavg()[0]:.2f}; steady steps timed after {a.warmup} warm-up step(s) and the first (compiling) one")
    print(markdown_table(rec, placeholder=a.quick))
    if rec.get('path'): print('record:', rec['path'])
    return rec

if __name__ == '__main__': main()
