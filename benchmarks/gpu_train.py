#!/usr/bin/env python
"""The papers' own schedules on one GPU with JAX, data kept on the device, highest value first, within a time limit.

Runs, in this order, as far as `--minutes` allows: Yu et al.'s CNN8 7x7 (Adam 1e-4, batch 64, up to 500 epochs,
early stopping on a validation split carved from Training), Shinde et al.'s custom CNN and ResNet50 from scratch
at 48 px (30 epochs, early stopping, learning-rate reduction), and Ugochukwu's learning-rate experiment at the
report's schedule (50 epochs per rate, 128 px RGB, FER+ labels). Asked for by name (`--runs`): lesson 15's compact
CNN at `COMPACT_FULL` (`compact`, issue #18) and Han et al.'s networks on FER2013 to early stopping (`han-fusion`,
`han-image+landmarks`, `han-image+hog`, `han-image`, `han-vgg16`, `han-resnet50`, issue #13; the fusion network's
faces, landmarks and HOG made on the device as lesson 20 makes them: `move_faces`, `fermusic.faces.hog_ops`).
Models and settings are the kit's own (`fermusic.cnn8`, `fermusic.resnet`, `fermusic.hparams`, `fermusic.compact`,
`fermusic.multimodal`); the training loop is a JAX one built on Keras' stateless API: the whole dataset is one
uint8 array on the device, each epoch is one compiled `lax.scan` that gathers its batches by index, augments them
(one random affine per image, `keras.ops.image.affine_transform`; for compact, han-vgg16 and han-resnet50 the kit's
own augmentation layers; for Han's own networks the lesson's moves, `move_faces`) and steps the
optimizer, in mixed precision. Each run writes a fermusic run record under `--out`/results.

    KERAS_BACKEND=jax python benchmarks/gpu_train.py --data .gpu/fer2013 --out $OUT [--minutes 9] [--runs yu,shinde-cnn]
    ... --runs compact,han-image,han-vgg16,han-resnet50 --seed 0      # the runs the 2-core CPU cannot finish
    ... --runs han-fusion,han-image+landmarks,han-image+hog            # needs a bundle with landmarks (gpu_prepare.sh --landmarks)
    ... --runs compact --seed 1 --concurrent 3    # one of 3 at once (gpu_run.sh --parallel)
    # CPU dry run (what tests/test_gpu_run.py does): --profile quick --limit 40 --epochs 2 --batch 4 --size 32

Usually started through `benchmarks/gpu_run.sh`, which installs the carried wheels and packs the records.
"""
import argparse, math, os, sys, time
from pathlib import Path
import numpy as np

RUNS = ('yu', 'shinde-cnn', 'shinde-resnet50', 'ugochukwu', 'compact', 'han-image', 'han-vgg16', 'han-resnet50',
        'han-fusion', 'han-image+landmarks', 'han-image+hog')
DEFAULT_RUNS = RUNS[:4]   # the papers' schedules of the first calls; compact and han-* are asked for by name

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default='.gpu/fer2013', help='bundle from benchmarks/pack_fer2013.py')
    ap.add_argument('--out', default=os.environ.get('OUT') or 'gpu_out', help='records go to OUT/results/<profile>/<paper>/')
    ap.add_argument('--runs', default=','.join(DEFAULT_RUNS), help=f'comma-separated, in order of value: {",".join(RUNS)} '
                    f'(default: {",".join(DEFAULT_RUNS)})')
    ap.add_argument('--minutes', type=float, default=9.0, help='wall-clock limit of the whole command (start included)')
    ap.add_argument('--precision', default='mixed_bfloat16', help="Keras dtype policy: mixed_bfloat16, mixed_float16 or float32")
    ap.add_argument('--profile', default='full', choices=['full', 'quick'], help="records' profile (a dry run: quick)")
    ap.add_argument('--ugo-lrs', default=None, help='learning rates of the Ugochukwu runs (default: the report grid)')
    ap.add_argument('--seed', default='0', help='seed, or comma-separated seeds: every run once per seed; '
                    "the model file is saved from seed 0's run only")
    ap.add_argument('--eval-batch', type=int, default=512, help='faces per prediction step')
    ap.add_argument('--concurrent', type=int, default=1,
                    help='gpu_train.py processes sharing the device at the same time, this one '
                    'included (gpu_run.sh --parallel sets it): above 1, written into each record')
    ap.add_argument('--allow-cpu', action='store_true', help='train on the CPU where JAX finds no GPU (dry runs); '
                    'without it the command stops at once, before spending the call on CPU work')
    ap.add_argument('--han-factor', type=int, default=1, help="Han runs: passes over the moved faces per epoch "
                    "(the paper's expansion: 30; the kit's converge schedule: 1)")
    g = ap.add_argument_group('dry-run shrinkers (each one is written into the records)')
    g.add_argument('--limit', type=int, default=None, help='at most this many Training faces (stratified), and a quarter as many per test split')
    g.add_argument('--epochs', type=int, default=None, help='cap on every run\'s epochs')
    g.add_argument('--batch', type=int, default=None, help='batch size of every run')
    g.add_argument('--size', type=int, default=None, help="Ugochukwu's input side (report: 128)")
    g.add_argument('--steps', type=int, default=None, help='at most this many training steps per epoch')
    return ap.parse_args(argv)

# --- the plan: the kit's settings, one dict per run ------------------------------------------------------

def plan(a) -> list:
    "The runs asked for, each with its model builder and the kit's settings (full profile) it follows."
    from fermusic.cnn8 import cnn8_settings, cnn8
    from fermusic.resnet import shinde_settings, build_model, run_name as shinde_name
    out = []
    for r in a.runs.split(','):
        if r not in RUNS: raise SystemExit(f'unknown run {r!r}; choose from {",".join(RUNS)}')
        if r == 'compact': out.append(plan_compact(a))
        elif r.startswith('han-'): out.append(plan_han(a, r.split('-', 1)[1]))
        elif r == 'yu':
            s = cnn8_settings('full')
            out.append(dict(run='yu', name=f"cnn8-{s['variant']}", paper='yu2020', settings=s, labels='fer2013',
                            build=lambda s=s: cnn8(s['variant'], lr=s['lr'], optimizer=s['optimizer']),
                            val=('fraction', s['val_fraction']), tests=[('PrivateTest', ['PrivateTest']), ('PublicTest', ['PublicTest'])],
                            batch=s['batch_size'], epochs=s['epochs'], augment=dict(s['augment']),
                            early=('val_accuracy', s['patience']), reduce=None, size=48, channels=1, save='cnn8_fer2013.keras'))
        elif r.startswith('shinde-'):
            m = r.split('-', 1)[1]
            s = dict(shinde_settings('full'), resnet_size=48, weights=None)
            out.append(dict(run=r, name=shinde_name(m, s), paper='shinde', settings=s, labels='fer2013',
                            build=lambda s=s, m=m: build_model(m, s), val=('fraction', s['val_fraction']),
                            tests=[('test', ['PublicTest', 'PrivateTest'])], batch=s['batch_size'], epochs=s['epochs'],
                            augment=dict(s['augment']), early=('val_loss', s['patience']),
                            reduce=('val_loss', s['lr_factor'], s['lr_patience'], s['min_lr']), size=48, channels=1, save=None,
                            notes=['ResNet50 from random initialisation at 48 px (ImageNet weights cannot be fetched here; '
                                   'the paper fine-tunes at 224 px)'] if m == 'resnet50' else []))
        else:
            from fermusic.hparams import ugo_settings, ugochukwu_cnn, run_name as ugo_name, BASE, GRIDS
            s = ugo_settings('full')
            lrs = [float(v) for v in a.ugo_lrs.split(',')] if a.ugo_lrs else GRIDS['lr']
            for lr in lrs:
                cfg = dict(BASE, lr=lr)
                out.append(dict(run='ugochukwu', name=ugo_name(cfg), paper='ugochukwu', settings=dict(s, **cfg, epoch_scale=1),
                                labels=s['labels'], build=lambda cfg=cfg, size=a.size or s['size']: ugochukwu_cnn(cfg['depth'], cfg['lr'], size=size),
                                val=('size', s['val_size']), tests=[('test', s['test_usages'])], batch=cfg['batch_size'],
                                epochs=cfg['epochs'], augment=dict(s['augment']), early=None, reduce=None, size=a.size or s['size'],
                                channels=3, save=None, test_each=True,
                                notes=["the report's schedule: experiment 1 (learning rate) at its 50 epochs, no early stopping; "
                                       "test accuracy read every epoch as the report does"]))
    for p in out:
        if a.epochs: p['epochs'] = min(p['epochs'], a.epochs)
        if a.batch: p['batch'] = a.batch
    return out

# --- data on the device --------------------------------------------------------------------------------

def load_data(path, a) -> dict:
    "The bundle as numpy arrays (and FER+ labels when packed), cut down by `--limit` for a dry run."
    sys.path.insert(0, str(Path(__file__).parent))
    from pack_fer2013 import unpack
    d = unpack(path)
    if a.limit:
        from fermusic.data import stratified_subset
        keep = []
        for u, k in (('Training', a.limit), ('PublicTest', max(a.limit // 4, 7)), ('PrivateTest', max(a.limit // 4, 7))):
            i = np.flatnonzero(d['usage'] == u)
            keep.append(i[np.sort(stratified_subset(d['y'][i], min(k, len(i)), seed=0))])
        keep = np.concatenate(keep)
        d = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in d.items()}
    return d

def splits(p:dict, d:dict, seed:int) -> dict:
    "Indices (into the bundle) and labels of train, val and each test split for run `p`, as the kit's lessons split."
    from fermusic.data import train_val_split, EMOTIONS
    y = d['y'] if p['labels'] == 'fer2013' or 'ferplus' not in d else d['ferplus']
    ok = (y >= 0) & (y < len(EMOTIONS))
    pool = np.flatnonzero((d['usage'] == 'Training') & ok)
    kind, v = p['val']
    frac = v if kind == 'fraction' else min(v / len(pool), 0.5)
    tr, va = train_val_split(pool, y[pool], frac, seed=seed)[:2]
    if kind == 'size': tr, va = np.sort(tr), np.sort(va)
    out = dict(train=tr, val=va, y=y, labels='FER+ majority vote' if y is not d['y'] else "FER2013's own")
    out['tests'] = {n: np.flatnonzero(np.isin(d['usage'], us) & ok) for n, us in p['tests']}
    return out

# --- the training loop -----------------------------------------------------------------------------------

def affine(key, xb, aug:dict):
    "One random affine per image (rotation, shift, zoom, shear) and random flips: the lesson's augmentation, on the device."
    import jax, jax.numpy as jnp, keras
    n, h, w = xb.shape[0], xb.shape[1], xb.shape[2]
    k = jax.random.split(key, 7)
    u = lambda kk, r: jax.random.uniform(kk, (n,), minval=-r, maxval=r)
    if aug.get('flip'): xb = jnp.where(jax.random.bernoulli(k[0], 0.5, (n,))[:, None, None, None], xb[:, :, ::-1], xb)
    th = u(k[1], aug.get('rotation', 0.) * math.pi / 180)
    t = aug.get('translation', 0.); tx, ty = u(k[2], t) * w, u(k[3], t) * h
    z = 1. + u(k[4], aug.get('zoom', 0.))
    sx, sy = u(k[5], aug.get('shear', 0.)), u(k[6], aug.get('shear', 0.))
    c, s = jnp.cos(th), jnp.sin(th)
    # input point = M @ (output point - centre) + centre - shift, with M = rotation @ shear @ zoom
    m00, m01 = z * (c - s * sy), z * (c * sx - s)
    m10, m11 = z * (s + c * sy), z * (s * sx + c)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    b0, b1 = cx - m00 * cx - m01 * cy - tx, cy - m10 * cx - m11 * cy - ty
    tf = jnp.stack([m00, m01, b0, m10, m11, b1, jnp.zeros(n), jnp.zeros(n)], axis=1)
    return keras.ops.image.affine_transform(xb, tf, interpolation='bilinear', fill_mode='nearest')

def batch_inputs(p:dict):
    """(key or None, data, idx) -> the model's input for the faces `idx` of `data`: prepared (float32, resized,
    channels), and augmented when a key is given. Han's multi-branch runs bring their own (`han_inputs`)."""
    import jax.numpy as jnp, keras
    if p.get('inputs'): return p['inputs']
    size, channels, aug = p.get('size'), p.get('channels'), p.get('augment') or {}
    augf = p.get('augment_fn') or ((lambda k, xb: affine(k, xb, aug)) if aug else None)   # the kit's layers, or one affine
    wrap = (lambda xb: {p['input']: xb}) if p.get('input') else (lambda xb: xb)           # a model with named inputs
    def f(key, x, idx):
        xb = x[idx].astype('float32')
        if size and size != xb.shape[1]: xb = keras.ops.image.resize(xb, (size, size), interpolation='bilinear')
        if channels and channels != xb.shape[-1]: xb = jnp.repeat(xb, channels, axis=-1)
        if key is not None and augf is not None: xb = augf(key, xb)
        return wrap(xb)
    return f

def make_fns(model, p:dict, batch:int, steps:int):
    "Compiled epoch (scan over batches gathered on the device) and prediction functions for `model`."
    import jax, jax.numpy as jnp, keras
    loss_fn, opt = keras.losses.SparseCategoricalCrossentropy(), model.optimizer
    inputs = batch_inputs(p)
    def train_step(carry, idx, x, y):
        tv, ntv, ov, key = carry
        key, ka = jax.random.split(key)
        xb = inputs(ka, x, idx); yb = y[idx]
        def lf(tv):
            pr, ntv2 = model.stateless_call(tv, ntv, xb, training=True)
            return loss_fn(yb, pr), (ntv2, pr)
        (l, (ntv2, pr)), g = jax.value_and_grad(lf, has_aux=True)(tv)
        tv2, ov2 = opt.stateless_apply(ov, g, tv)
        return (tv2, ntv2, ov2, key), (l, jnp.mean(jnp.argmax(pr, -1) == yb))
    @jax.jit
    def epoch(state, key, x, y, train_idx):
        kp, kr = jax.random.split(key)
        order = jax.random.permutation(kp, train_idx)[:steps * batch].reshape(steps, batch)  # last partial batch left out
        (tv, ntv, ov, _), (l, acc) = jax.lax.scan(lambda c, i: train_step(c, i, x, y), (*state, kr), order)
        return (tv, ntv, ov), jnp.mean(l), jnp.mean(acc)
    @jax.jit
    def predict(tv, ntv, x, idx):                          # idx: n_batches x eval_batch
        f = lambda _, i: (None, model.stateless_call(tv, ntv, inputs(None, x, i), training=False)[0].astype('float32'))
        return jax.lax.scan(f, None, idx)[1].reshape(-1, model.output_shape[-1])
    return epoch, predict

def proba(predict, state, x, idx, eb:int):
    "Class probabilities of the faces `idx` (padded to whole batches on the device, cut back here)."
    import jax.numpy as jnp
    n = len(idx); pad = np.concatenate([idx, np.zeros((-n) % eb, idx.dtype)]).reshape(-1, eb)
    return np.asarray(predict(state[0], state[1], x, jnp.asarray(pad)))[:n]

def ce(pr, y) -> float:
    "Mean sparse categorical cross-entropy, clipped as Keras clips."
    return float(-np.mean(np.log(np.clip(pr[np.arange(len(y)), y], 1e-7, 1.))))

class Plateau:
    "Keras' EarlyStopping (patience, best weights) and ReduceLROnPlateau rules, on host-side epoch logs."
    def __init__(self, monitor, patience, min_delta=0.):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = 1 if 'acc' in monitor else -1
        self.best, self.best_epoch, self.wait = -math.inf, None, 0
    def update(self, epoch, logs) -> bool:
        "True when this epoch improved the monitored value."
        v = self.sign * logs[self.monitor]; self.wait += 1
        if v > self.best + self.min_delta: self.best, self.best_epoch, self.wait = v, epoch, 0; return True
        return False

def kit_dataset_keys(ds:dict, size:int, paper:str) -> dict:
    """`ds` with its counts under the keys the paper's own records use (its lesson and claims read them), and no others:
    yu2020 and kit train, val, public_test, private_test; ugochukwu size, sizes; shinde (and any other) train, val, test."""
    out = {k: ds[k] for k in ('name', 'path', 'labels', 'limit') if k in ds}
    if paper == 'ugochukwu': return dict(out, size=size, sizes=dict(train=ds['train'], val=ds['val'], test=ds.get('test')))
    out.update(train=ds['train'], val=ds['val'])
    if paper in ('yu2020', 'kit'):   # the kit's compact run: run_compact's keys too
        return dict(out, public_test=ds['PublicTest'], private_test=ds['PrivateTest'])
    return dict(out, test=ds.get('test'))

def train(p:dict, d:dict, dev:dict, a, deadline:float, log, seed:int=0) -> None:
    """Train and evaluate run `p` until it converges, ends its schedule or meets `deadline`; write its record.
    `dev`: the faces on the device (x) and, when the bundle has them, their landmarks (pts)."""
    import jax, jax.numpy as jnp, keras
    from fermusic.config import set_seed
    from fermusic.data import EMOTIONS
    from fermusic.records import model_fields, recording
    from fermusic.train import run_schedule, classification_metrics, save_for_inference
    t_start = time.time()
    xd = dev if p.get('inputs') else dev['x']   # Han's multi-branch runs read faces and landmarks
    sp = splits(p, d, p.get('split_seed', seed))                  # Han's lesson carves validation with seed 0
    if p.get('kit_augment'): p = dict(p, augment_fn=kit_augment(p['augment']))
    set_seed(seed, deterministic=False)
    model = p['build']()
    model.layers[-1].dtype_policy = keras.DTypePolicy('float32')   # softmax in float32 under mixed precision
    opt = model.optimizer; opt.build(model.trainable_variables)
    lr_var = next(i for i, v in enumerate(opt.variables) if v.path.endswith('learning_rate'))
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in opt.variables])
    factor = p.get('factor', 1)                                   # passes over the (moved) faces per epoch
    steps = min(len(sp['train']) * factor // p['batch'], a.steps or math.inf)
    epoch_fn, predict = make_fns(model, p, p['batch'], steps)
    yd, tr = jnp.asarray(sp['y'].astype(np.int32)), jnp.asarray(np.tile(sp['train'], factor).astype(np.int32))
    key = jax.random.PRNGKey(seed)
    early = Plateau(*p['early']) if p['early'] else None
    reduce = Plateau(p['reduce'][0], p['reduce'][2], min_delta=1e-4) if p['reduce'] else None
    hist, best, stopped, n_train = {}, None, None, len(sp['train'])
    dataset = dict(name='fer2013', path=str(a.data), labels=sp['labels'], train=n_train, val=len(sp['val']),
                   **{k: len(v) for k, v in sp['tests'].items()}, limit=a.limit)
    dataset = kit_dataset_keys(dataset, p['size'], p['paper'])
    if p['paper'] == 'shinde':   # Table 1's class counts, as the lesson's records keep them
        from types import SimpleNamespace
        from fermusic.resnet import class_counts
        n_of = lambda idx: class_counts(SimpleNamespace(y=sp['y'][idx]))
        dataset['class_counts'] = dict(train=n_of(np.concatenate([sp['train'], sp['val']])),
                                       test=n_of(np.concatenate(list(sp['tests'].values()))))
    params = {k: v for k, v in p['settings'].items() if not k.startswith('_')}
    if 'seed' in params: params['seed'] = seed   # the settings' default seed is not this run's
    params.update(batch_size=p['batch'], epochs=p['epochs'], precision=a.precision, loop='jax device scan (benchmarks/gpu_train.py)',
                  size=p['size'], dry_run=dict(limit=a.limit, epochs=a.epochs, batch=a.batch, size=a.size, steps=a.steps))
    with recording(p['name'], paper=p['paper'], seed=seed, profile=a.profile, params=params, dataset=dataset,
                   root=Path(a.out)/'results') as rec:
        rec.notes.extend(p.get('notes', []) + [
            'trained on the device: the data stay on the GPU; each epoch is one compiled scan over batches gathered by index; '
            + ("augmentation is the kit's own Keras layers, each drawing from the loop's key; " if p.get('kit_augment') else
               'augmentation is one random affine per image (bilinear, nearest fill) instead of stacked Keras layers; ') +
            f'the last partial batch of each epoch is left out; {a.precision} with a float32 softmax'])
        # validation scored as the test is, after re-estimating BN statistics (the lesson's `RecalibratedValidation`)
        recal = (bn_recalibrator(model, p, sp['train'], seed, p['recalibrate'])
                 if p.get('val_recalibrate') and p.get('recalibrate') else None)
        if recal is not None:
            rec.notes.append(f"validation scored after re-estimating BN statistics on {p['recalibrate']} plain "
                             'training batches each epoch (the lesson\'s RecalibratedValidation)')
        for epoch in range(p['epochs']):
            t0 = time.time(); key, ke = jax.random.split(key)
            state, l, acc = epoch_fn(state, ke, xd, yd, tr)
            logs = dict(loss=float(l), accuracy=float(acc))
            t1 = time.time()
            if recal is not None: state = recal(state, xd)
            pv = proba(predict, state, xd, sp['val'], a.eval_batch); yv = sp['y'][sp['val']]
            logs.update(val_loss=ce(pv, yv), val_accuracy=float(np.mean(pv.argmax(1) == yv)))
            if p.get('test_each'):
                (tn, ti), = sp['tests'].items(); pt = proba(predict, state, xd, ti, a.eval_batch); yt = sp['y'][ti]
                logs.update(test_loss=ce(pt, yt), test_accuracy=float(np.mean(pt.argmax(1) == yt)))
            logs.update(learning_rate=float(state[2][lr_var]), epoch_seconds=time.time() - t0,
                        train_seconds=t1 - t0, train_images_per_s=steps * p['batch'] / (t1 - t0))
            for k, v in logs.items(): hist.setdefault(k, []).append(v)
            log(f"{p['name']} epoch {epoch + 1}/{p['epochs']}: " + ' '.join(f'{k} {v:.4g}' for k, v in logs.items()))
            if early is not None and early.update(epoch, logs): best = (state[0], state[1])
            if early is not None and early.wait >= early.patience and epoch > 0: stopped = 'converged'; break
            if reduce is not None and not reduce.update(epoch, logs) and reduce.wait >= reduce.patience:
                lr = float(state[2][lr_var]); new = max(lr * p['reduce'][1], p['reduce'][3])
                if new < lr:
                    ov = list(state[2]); ov[lr_var] = jnp.asarray(new, ov[lr_var].dtype); state = (state[0], state[1], ov); reduce.wait = 0
            typical = float(np.median(hist['epoch_seconds'][1:] or hist['epoch_seconds']))
            if time.time() + typical + 20 + typical * 0.2 > deadline: stopped = 'time_budget'; break
        epochs_run = len(hist['loss'])
        stopped = stopped or 'planned_end'
        if best is not None: state = (best[0], best[1], state[2])   # best weights restored, as the kit's EarlyStopping does
        for v, val in zip(model.trainable_variables, state[0]): v.assign(val)
        if p.get('recalibrate'): state = recalibrate(model, p, state, xd, sp['train'], seed, p['recalibrate'])
        for v, val in zip(model.non_trainable_variables, state[1]): v.assign(val)
        rec.history, rec.epochs_run = hist, epochs_run
        rec.schedule = run_schedule(hist, p['epochs'], stopped, monitor='val_accuracy')
        if early is not None: rec.best_epoch = early.best_epoch + 1
        if stopped == 'time_budget': rec.notes.append(f'stopped by the time limit of the GPU call after {epochs_run} of {p["epochs"]} epochs')
        if p.get('evaluate'): p['evaluate'](rec, model, p, state, d, xd, sp, a, seed, predict)
        else:
            for name, idx in sp['tests'].items():
                pt = proba(predict, state, xd, idx, a.eval_batch)
                rec.add_evaluation(classification_metrics(sp['y'][idx], pt.argmax(1), EMOTIONS), split=name)
        if p.get('extra'): rec.update(p['extra'](model))
        if p.get('test_each'):
            from fermusic.hparams import final_metrics
            rec.metrics = dict(final_metrics(hist), epochs_done=epochs_run); rec.metrics['accuracy_test'] = rec.metrics['test_accuracy']
        rec.params_count = model.count_params()
        ips = hist['train_images_per_s']
        rec.throughput = dict(train_images_per_s=float(np.median(ips[1:] or ips)), first_epoch_s=hist['epoch_seconds'][0],
                              precision=a.precision, device=str(jax.devices()[0]),
                              device_kind=jax.devices()[0].device_kind)
        if a.concurrent > 1:   # gpu_run.sh --parallel: the speeds above are shared-device speeds
            rec.throughput['concurrent_runs'] = a.concurrent
            rec.notes.append(f'trained as one of {a.concurrent} gpu_train.py processes sharing the '
                             'device at the same time (gpu_run.sh --parallel): its images/s and '
                             'epoch seconds are shared-device speeds, not solo ones')
        if p.get('save') and seed == 0:
            keras.mixed_precision.set_global_policy('float32')          # save a float32 copy: same weights, the kit's dtype
            m32 = p['build'](); m32.set_weights(model.get_weights())
            keras.mixed_precision.set_global_policy(a.precision)
            path = save_for_inference(m32, Path(a.out)/p['save']); rec.update(model_fields(path), model=p.get('ship', path.name))
    log(f"{p['name']}: {epochs_run} epochs, stopped {stopped}, " + ', '.join(f"{k} {v['accuracy']:.4f}" for k, v in rec.evaluations.items())
        + f", {time.time() - t_start:.0f} s, record {rec.get('path')}")

# --- the compact CNN (issue #18) and Han et al.'s image-only networks (issue #13) ----------------------------

def kit_augment(aug:dict):
    "The kit's own augmentation stack (`fermusic.train.augmentation`, as `fit_run` builds it) as a pure (key, batch) -> batch."
    import jax, keras
    from fermusic.train import augmentation
    stack = augmentation(**aug)
    if stack is None: return None
    for l in stack.layers: l.dtype_policy = keras.DTypePolicy('float32')   # pixels stay float32 under mixed precision
    def f(key, xb):
        for l, k in zip(stack.layers, jax.random.split(key, len(stack.layers))):   # each layer draws from its own key
            t = l.get_random_transformation(xb, training=True, seed=k)   # Keras' JAX backend takes a key as the seed
            xb = l.transform_images(xb, t, training=True)
        return xb
    return f

def plan_compact(a) -> dict:
    "Lesson 15's compact CNN at `COMPACT_FULL` (Adam 1e-3, batch 32, patience 50, LR patience 12), as `run_compact` trains it."
    from fermusic.compact import compact_settings, compact_cnn, count_flops, default_compact_path
    from fermusic.config import rel_path
    s = compact_settings('full')
    return dict(run='compact', name='compact', paper='kit', settings=s, labels='fer2013',
                build=lambda: compact_cnn(s['widths'], s['stem'], lr=s['lr'], upsample=s.get('upsample')),
                val=('fraction', s['val_fraction']),
                tests=[('PrivateTest', ['PrivateTest']), ('PublicTest', ['PublicTest'])],   # PrivateTest fills `metrics`
                batch=s['batch_size'], epochs=s['epochs'], augment=dict(s['augment']), kit_augment=True,
                early=('val_accuracy', s['patience']) if s.get('patience') else None,   # as `standard_callbacks`: 0/None = off
                reduce=('val_loss', s.get('lr_factor', 0.5), s['lr_patience'], s.get('min_lr', 1e-6)) if s.get('lr_patience') else None,
                size=48, channels=1, save='compact_fer2013.keras', ship=rel_path(default_compact_path()),   # where the lead puts it
                extra=lambda m: dict(flops_per_image=count_flops(m)),
                notes=["lesson 15's run_compact schedule (COMPACT_FULL) on the GPU: the kit's augmentation layers "
                       '(fermusic.train.augmentation) applied on the device, each layer drawing from the loop\'s key'])

HAN_KINDS = ('image', 'vgg16', 'resnet50', 'fusion', 'image+landmarks', 'image+hog')

def han_gpu_settings(kind:str, factor:int=1) -> dict:
    "Han's full settings, the kit's converge schedule for `kind` (HAN_FER2013_CPU / HAN_BASELINES_CPU), up to 500 epochs."
    from fermusic.config import get_overrides
    from fermusic.multimodal import han_settings, HAN_FULL, HAN_FER2013_CPU, HAN_BASELINES_CPU, APPS
    over = HAN_BASELINES_CPU if kind in APPS else HAN_FER2013_CPU   # fusion and its ablations share one schedule
    return {**han_settings('full'), **over, 'models': [kind], 'epochs': HAN_FULL['epochs'], 'factor': factor,
            **get_overrides()}   # FERMUSIC_OVERRIDES still have the last word

def move_faces(xb, pts, th, dx, dy):
    """Lesson 20's `transform_faces` as tensor operations: faces (N x H x W x 1, float32 0-255) rotated by `th` (radians)
    about the centre and shifted by (dx, dy) pixels, bilinear with edge fill, rounded to whole grey levels; the
    landmarks (N x 68 x 2, or None) moved alike and clipped to the frame."""
    from keras import ops
    h, w = xb.shape[1], xb.shape[2]; c = (w - 1) / 2
    co, si = ops.cos(th), ops.sin(th)
    # keras' affine_transform maps each output pixel q to the input point R(-th) (q - c - d) + c
    a2, b2 = c - (co * (c + dx) + si * (c + dy)), c - (-si * (c + dx) + co * (c + dy))
    z = ops.zeros_like(th)
    tf = ops.stack([co, si, a2, -si, co, b2, z, z], axis=1)
    out = ops.image.affine_transform(xb, tf, interpolation='bilinear', fill_mode='nearest')
    out = ops.clip(ops.round(out), 0, 255)
    if pts is None: return out, None
    px, py = pts[..., 0] - c, pts[..., 1] - c
    co, si, dx, dy = co[:, None], si[:, None], dx[:, None], dy[:, None]
    moved = ops.stack([ops.clip(co * px - si * py + c + dx, 0, w - 1), ops.clip(si * px + co * py + c + dy, 0, h - 1)], -1)
    return out, moved

def han_move(key, xb, pts, rotation:float, translation:float):
    "Each face (and its landmarks) moved at random as lesson 20's `random_affine` draws: rotation and shift, uniform."
    import jax
    n, size = xb.shape[0], xb.shape[1]
    k1, k2 = jax.random.split(key)
    th = jax.random.uniform(k1, (n,), minval=-rotation, maxval=rotation) * (math.pi / 180)
    d = jax.random.uniform(k2, (2, n), minval=-translation, maxval=translation) * size
    return move_faces(xb, pts, th, d[0], d[1])

def han_inputs(kind:str, S:dict):
    """(key or None, data, idx) -> the inputs of Han's network `kind` for the faces `idx` of data = {x, pts}: moved as
    the lesson moves them when a key is given (landmarks with them), HOG computed from the (moved) faces."""
    from fermusic.faces import hog_ops
    from fermusic.multimodal import branches_of
    branches = branches_of(kind)
    def f(key, data, idx):
        xb = data['x'][idx].astype('float32')
        pts = data['pts'][idx] if 'landmarks' in branches else None
        if key is not None: xb, pts = han_move(key, xb, pts, S['rotation'], S['translation'])
        out = dict(image=xb)
        if pts is not None: out['landmarks'] = pts.reshape(pts.shape[0], -1) / (xb.shape[1] - 1)   # `landmark_vector`
        if 'hog' in branches: out['hog'] = hog_ops(xb, **S['hog'])
        return {b: out[b] for b in branches}
    return f

def plan_han(a, kind:str) -> dict:
    """One of Han et al.'s FER2013 networks: the fusion network or an ablation (faces moved as the lesson moves them,
    landmarks with them, HOG of the moved faces on the device), or VGG16 or ResNet50 from scratch."""
    if kind not in HAN_KINDS: raise SystemExit(f'han-{kind}: unknown; choose from han-{", han-".join(HAN_KINDS)}')
    from fermusic.multimodal import build, run_settings, branches_of, APPS
    S = han_gpu_settings(kind, a.han_factor); R = run_settings(kind, S); app = kind in APPS
    return dict(run=f'han-{kind}', name=f'{kind}-fer2013', paper='han', settings=dict(S, kind=kind), labels='fer2013',
                build=lambda: build(kind, 7, S), val=('fraction', S['val_fraction']), split_seed=0,
                tests=[('test', ['PrivateTest'])], batch=S['batch_size'], epochs=R['epochs'], factor=S['factor'],
                augment=dict(rotation=S['rotation'], translation=S['translation']), kit_augment=app,
                inputs=None if app else han_inputs(kind, S),
                landmarks='landmarks' in branches_of(kind),   # the bundle must carry dlib's points (gpu_prepare.sh --landmarks)
                early=('val_accuracy', R['patience']) if R.get('patience') else None,
                reduce=('val_loss', R.get('lr_factor') or 0.5, R['lr_patience'], R.get('min_lr') or 1e-6) if R.get('lr_patience') else None,
                size=48, channels=1, save=None, han=S, recalibrate=S['bn_recalibrate'], evaluate=han_evaluate,
                val_recalibrate=S.get('val_recalibrate'),
                notes=["Han's converge schedule (HAN_FER2013_CPU / HAN_BASELINES_CPU) with the paper's 500-epoch cap, on the GPU: "
                       + ("the moves (rotation, shift) are the kit's augmentation layers on the device, as the lesson's" if app else
                          "each face moved as the lesson's transform_faces moves it (rotation about the centre, shift; bilinear, "
                          'edge fill, rounded), as tensor operations on the device (move_faces), landmarks moved alike, HOG of '
                          "the moved face by fermusic.faces.hog_ops (scikit-image's algorithm, equal to float32 rounding)")
                       + f"; expansion factor {S['factor']}; BN statistics re-estimated on {S['bn_recalibrate']} plain batches"])

def bn_recalibrator(model, p:dict, train_idx, seed:int, n:int, momentum:float=0.9):
    """`fermusic.train.recalibrate_bn` on the device, compiled once: a function (state, x) -> state with the BN moving
    statistics re-estimated on `n` plain shuffled training batches, the same batches at every call."""
    import jax, jax.numpy as jnp, keras
    from fermusic.train import all_layers
    bns = [l for l in all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    if not bns: return lambda state, xd: state
    rng = np.random.default_rng(seed)
    bs = p['batch']; order = rng.permutation(train_idx)
    nb = max(len(order) // bs, 1); idx = np.stack([order[(k % nb) * bs:(k % nb + 1) * bs] for k in range(n)])
    idx = jnp.asarray(idx.astype(np.int32))
    inputs = batch_inputs(p)
    @jax.jit
    def run(tv, ntv, x, idx):
        f = lambda ntv, i: (model.stateless_call(tv, ntv, inputs(None, x, i), training=True)[1], None)
        return jax.lax.scan(f, ntv, idx)[0]
    def recal(state, xd):
        old = [l.momentum for l in bns]
        for l in bns: l.momentum = momentum               # read when `run` is traced (its first call)
        try: ntv = run(state[0], state[1], xd, idx)
        finally:
            for l, m in zip(bns, old): l.momentum = m
        return (state[0], ntv, state[2])
    return recal

def recalibrate(model, p:dict, state, xd, train_idx, seed:int, n:int, momentum:float=0.9):
    "`fermusic.train.recalibrate_bn` on the device: BN moving statistics re-estimated on `n` plain shuffled training batches."
    return bn_recalibrator(model, p, train_idx, seed, n, momentum)(state, xd)

def moved_predict(model, p:dict):
    "A compiled (tv, ntv, x, idx, key) -> probabilities of the faces `idx` each moved at random by the run's augmentation."
    import jax
    inputs = batch_inputs(p)
    @jax.jit
    def run(tv, ntv, x, idx, key):
        def f(key, i):
            key, k = jax.random.split(key)
            out = model.stateless_call(tv, ntv, inputs(k, x, i), training=False)[0]
            return key, out.astype('float32')
        return jax.lax.scan(f, key, idx)[1].reshape(-1, model.output_shape[-1])
    return run

def han_evaluate(rec, model, p:dict, state, d:dict, xd, sp:dict, a, seed:int, predict):
    "Score as `run_fer2013` does: 10-pass test (plain + moved), single pass, FER+ faces, and the photometric robustness tests."
    import jax
    from fermusic.data import EMOTIONS
    from fermusic.multimodal import score, perturb, noise_counts, PERTURBATIONS
    S, (idx,) = p['han'], sp['tests'].values(); y = sp['y'][idx]
    pts = d.get('landmarks')   # dlib's, packed by `pack_fer2013.py --landmarks`
    t0 = time.perf_counter()
    single = proba(predict, state, xd, idx, a.eval_batch)
    moved = moved_predict(model, p)   # one test pass of the paper's protocol: every face moved at random
    n, eb = len(idx), a.eval_batch; pad = jax.numpy.asarray(np.concatenate([idx, np.zeros((-n) % eb, idx.dtype)]).reshape(-1, eb))
    ps = [single] + [np.asarray(moved(state[0], state[1], xd, pad, jax.random.PRNGKey(seed + 1 + k)))[:n]
                     for k in range(S['tta'] - 1)]
    pr = np.mean(ps, axis=0); secs = time.perf_counter() - t0
    rec.add_evaluation(dict(score(y, pr, EMOTIONS), predict_seconds=secs, passes=len(ps)), 'test')
    rec.add_evaluation(score(y, single, EMOTIONS), 'test_single_pass')
    if 'nonface' in d:
        rec['dataset']['ferplus_nonface'] = int(d['nonface'].sum())
        keep = ~d['nonface'][idx].astype(bool)
        rec.add_evaluation(score(y[keep], pr[keep], EMOTIONS), 'test_ferplus_faces')
    if pts is not None:        # the paper's cleaning: the faces the detector finds
        det = d['n_faces'][idx] > 0
        rec.add_evaluation(score(y[det], pr[det], EMOTIONS), 'test_detected')
        rec['dataset']['noise'] = noise_counts(dict(n_faces=d['n_faces'], outside=d['outside']))
    else: rec.notes.append('not scored: test_detected and the occlusion tests (the bundle has no landmarks: '
                           'gpu_prepare.sh --landmarks)')
    rec.metrics['mean_class_accuracy'] = rec.evaluations['test']['mean_class_accuracy']
    rob, reused = {}, []
    for k in PERTURBATIONS if pts is not None else ('original', 'bright', 'dark', 'colour'):
        xk = d['x'][idx] if k == 'original' else perturb(d['x'][idx][..., None], None if pts is None else pts[idx], k)[..., 0]
        xk = jax.device_put(xk[..., None])
        if p.get('inputs'):   # Han's branches: the lesson re-detects each disturbed face's landmarks (dlib, packed)
            pk = pts[idx] if k == 'original' or f'robust_{k}' not in d else d[f'robust_{k}'][idx]
            if k != 'original' and f'robust_{k}' not in d and p.get('landmarks'): reused.append(k)
            xk = dict(x=xk, **({'pts': jax.device_put(pk)} if pts is not None else {}))
        rob[k] = float(np.mean(proba(predict, state, xk, np.arange(len(idx)), a.eval_batch).argmax(1) == y))
    if reused: rec.notes.append(f"robustness {', '.join(reused)}: the undisturbed faces' landmarks (the bundle has no "
                                're-detected ones: gpu_prepare.sh --landmarks packs them)')
    rec.robustness = rob

def main(argv=None):
    t_start = time.time(); a = parse(argv)
    if a.concurrent < 1:
        raise SystemExit(f'--concurrent {a.concurrent}: the processes sharing the device, this one '
                         'included, are at least 1')
    deadline = t_start + a.minutes * 60 - 15          # 15 s for packing the records
    if os.environ.get('KERAS_BACKEND', 'jax') != 'jax': raise SystemExit('gpu_train.py needs KERAS_BACKEND=jax')
    os.environ['KERAS_BACKEND'] = 'jax'
    fracs = ('XLA_CLIENT_MEM_FRACTION', 'XLA_PYTHON_CLIENT_MEM_FRACTION')
    if all(os.environ.get(k) for k in fracs):   # jaxlib then fails its GPU start, and JAX falls back to the CPU
        raise SystemExit(f'gpu_train.py: {fracs[0]} and {fracs[1]} are both set, which a newer jaxlib refuses '
                         f'(no GPU): keep {fracs[0]} where it is read, else {fracs[1]}')
    import jax, keras
    if jax.default_backend() == 'cpu' and not a.allow_cpu:
        raise SystemExit(f'gpu_train.py: JAX found no GPU (devices {jax.devices()}; its reason is in the lines '
                         'above): stopped before training on the CPU; --allow-cpu trains there anyway (dry runs)')
    keras.mixed_precision.set_global_policy(a.precision)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    logf = open(Path(a.out)/'gpu_train.log', 'a')
    def log(msg):
        line = f'[{time.time() - t_start:6.1f}s] {msg}'; print(line, flush=True); logf.write(line + '\n'); logf.flush()
    log(f'devices {jax.devices()}, keras {keras.__version__}, jax {jax.__version__}, policy {a.precision}')
    d = load_data(a.data, a)
    dev = dict(x=jax.device_put(d['x'][..., None]))      # every face, uint8, once: batches are gathered on the device
    if 'landmarks' in d: dev['pts'] = jax.device_put(d['landmarks'])
    log(f"data: {len(d['x'])} faces on {dev['x'].devices()}, FER+ labels {'yes' if 'ferplus' in d else 'no'}, "
        f"landmarks {'yes' if 'landmarks' in d else 'no'}")
    need = [p['run'] for p in plan(a) if p.get('landmarks')]
    if need and 'landmarks' not in d:   # before any training: the call's minutes are not spent on runs that cannot start
        raise SystemExit(f"{', '.join(need)}: {a.data} has no landmarks; build the bundle with "
                         '`bash benchmarks/gpu_prepare.sh --landmarks` (dlib\'s points of the lesson, packed into meta.npz)')
    seeds = [int(v) for v in str(a.seed).split(',')]
    for seed in seeds:
        for p in plan(a):
            if deadline - time.time() < 45:
                log(f"{p['name']} seed {seed}: skipped, {deadline - time.time():.0f} s left"); continue
            train(p, d, dev, a, deadline, log, seed)
    log('done')

if __name__ == '__main__': main()
