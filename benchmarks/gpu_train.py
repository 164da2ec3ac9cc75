#!/usr/bin/env python
"""The papers' own schedules on one GPU with JAX, data kept on the device, highest value first, within a time limit.

Runs, in this order, as far as `--minutes` allows: Yu et al.'s CNN8 7x7 (Adam 1e-4, batch 64, up to 500 epochs,
early stopping on a validation split carved from Training), Shinde et al.'s custom CNN and ResNet50 from scratch
at 48 px (30 epochs, early stopping, learning-rate reduction), and Ugochukwu's learning-rate experiment at the
report's schedule (50 epochs per rate, 128 px RGB, FER+ labels). Models and settings are the kit's own
(`fermusic.cnn8`, `fermusic.resnet`, `fermusic.hparams`); the training loop is a JAX one built on Keras'
stateless API: the whole dataset is one uint8 array on the device, each epoch is one compiled `lax.scan` that
gathers its batches by index, augments them with one random affine per image (`keras.ops.image.affine_transform`)
and steps the optimizer, in mixed precision. Each run writes a fermusic run record under `--out`/results.

    KERAS_BACKEND=jax python benchmarks/gpu_train.py --data .gpu/fer2013 --out $OUT [--minutes 9] [--runs yu,shinde-cnn]
    # CPU dry run (what tests/test_gpu_run.py does): --profile quick --limit 40 --epochs 2 --batch 4 --size 32

Usually started through `benchmarks/gpu_run.sh`, which installs the carried wheels and packs the records.
"""
import argparse, math, os, sys, time
from pathlib import Path
import numpy as np

RUNS = ('yu', 'shinde-cnn', 'shinde-resnet50', 'ugochukwu')

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default='.gpu/fer2013', help='bundle from benchmarks/pack_fer2013.py')
    ap.add_argument('--out', default=os.environ.get('OUT') or 'gpu_out', help='records go to OUT/results/<profile>/<paper>/')
    ap.add_argument('--runs', default=','.join(RUNS), help=f'comma-separated, in order of value: {",".join(RUNS)}')
    ap.add_argument('--minutes', type=float, default=9.0, help='wall-clock limit of the whole command (start included)')
    ap.add_argument('--precision', default='mixed_bfloat16', help="Keras dtype policy: mixed_bfloat16, mixed_float16 or float32")
    ap.add_argument('--profile', default='full', choices=['full', 'quick'], help="records' profile (a dry run: quick)")
    ap.add_argument('--ugo-lrs', default=None, help='learning rates of the Ugochukwu runs (default: the report grid)')
    ap.add_argument('--seed', default='0', help='seed, or comma-separated seeds: every run once per seed; '
                    "the model file is saved from seed 0's run only")
    ap.add_argument('--eval-batch', type=int, default=512, help='faces per prediction step')
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
        if r == 'yu':
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

def make_fns(model, p:dict, batch:int, steps:int):
    "Compiled epoch (scan over batches gathered on the device) and prediction functions for `model`."
    import jax, jax.numpy as jnp, keras
    loss_fn, opt = keras.losses.SparseCategoricalCrossentropy(), model.optimizer
    size, channels, aug = p['size'], p['channels'], p['augment'] or {}
    def prep(xb):
        xb = xb.astype('float32')
        if size != xb.shape[1]: xb = keras.ops.image.resize(xb, (size, size), interpolation='bilinear')
        return jnp.repeat(xb, channels, axis=-1) if channels != xb.shape[-1] else xb
    def train_step(carry, idx, x, y):
        tv, ntv, ov, key = carry
        key, ka = jax.random.split(key)
        xb = prep(x[idx]); yb = y[idx]
        if aug: xb = affine(ka, xb, aug)
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
        f = lambda _, i: (None, model.stateless_call(tv, ntv, prep(x[i]), training=False)[0].astype('float32'))
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
    yu2020 train, val, public_test, private_test; ugochukwu size, sizes; shinde (and any other) train, val, test."""
    out = {k: ds[k] for k in ('name', 'path', 'labels', 'limit') if k in ds}
    if paper == 'ugochukwu': return dict(out, size=size, sizes=dict(train=ds['train'], val=ds['val'], test=ds.get('test')))
    out.update(train=ds['train'], val=ds['val'])
    if paper == 'yu2020': return dict(out, public_test=ds['PublicTest'], private_test=ds['PrivateTest'])
    return dict(out, test=ds.get('test'))

def train(p:dict, d:dict, xd, a, deadline:float, log, seed:int=0) -> None:
    "Train and evaluate run `p` until it converges, ends its schedule or meets `deadline`; write its record."
    import jax, jax.numpy as jnp, keras
    from fermusic.config import set_seed
    from fermusic.data import EMOTIONS
    from fermusic.records import model_fields, recording
    from fermusic.train import run_schedule, classification_metrics, save_for_inference
    t_start = time.time()
    sp = splits(p, d, seed)
    set_seed(seed, deterministic=False)
    model = p['build']()
    model.layers[-1].dtype_policy = keras.DTypePolicy('float32')   # softmax in float32 under mixed precision
    opt = model.optimizer; opt.build(model.trainable_variables)
    lr_var = next(i for i, v in enumerate(opt.variables) if v.path.endswith('learning_rate'))
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in opt.variables])
    steps = min(len(sp['train']) // p['batch'], a.steps or math.inf)
    epoch_fn, predict = make_fns(model, p, p['batch'], steps)
    yd, tr = jnp.asarray(sp['y'].astype(np.int32)), jnp.asarray(sp['train'].astype(np.int32))
    key = jax.random.PRNGKey(seed)
    early = Plateau(*p['early']) if p['early'] else None
    reduce = Plateau(p['reduce'][0], p['reduce'][2], min_delta=1e-4) if p['reduce'] else None
    hist, best, stopped, n_train = {}, None, None, len(sp['train'])
    dataset = dict(name='fer2013', path=str(a.data), labels=sp['labels'], train=n_train, val=len(sp['val']),
                   **{k: len(v) for k, v in sp['tests'].items()}, limit=a.limit)
    dataset = kit_dataset_keys(dataset, p['size'], p['paper'])
    params = {k: v for k, v in p['settings'].items() if not k.startswith('_')}
    if 'seed' in params: params['seed'] = seed   # the settings' default seed is not this run's
    params.update(batch_size=p['batch'], epochs=p['epochs'], precision=a.precision, loop='jax device scan (benchmarks/gpu_train.py)',
                  size=p['size'], dry_run=dict(limit=a.limit, epochs=a.epochs, batch=a.batch, size=a.size, steps=a.steps))
    with recording(p['name'], paper=p['paper'], seed=seed, profile=a.profile, params=params, dataset=dataset,
                   root=Path(a.out)/'results') as rec:
        rec.notes.extend(p.get('notes', []) + [
            'trained on the device: the data stay on the GPU; each epoch is one compiled scan over batches gathered by index; '
            'augmentation is one random affine per image (bilinear, nearest fill) instead of stacked Keras layers; '
            f'the last partial batch of each epoch is left out; {a.precision} with a float32 softmax'])
        for epoch in range(p['epochs']):
            t0 = time.time(); key, ke = jax.random.split(key)
            state, l, acc = epoch_fn(state, ke, xd, yd, tr)
            logs = dict(loss=float(l), accuracy=float(acc))
            t1 = time.time()
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
        for v, val in zip(model.non_trainable_variables, state[1]): v.assign(val)
        rec.history, rec.epochs_run = hist, epochs_run
        rec.schedule = run_schedule(hist, p['epochs'], stopped, monitor='val_accuracy')
        if early is not None: rec.best_epoch = early.best_epoch + 1
        if stopped == 'time_budget': rec.notes.append(f'stopped by the time limit of the GPU call after {epochs_run} of {p["epochs"]} epochs')
        for name, idx in sp['tests'].items():
            pt = proba(predict, state, xd, idx, a.eval_batch)
            rec.add_evaluation(classification_metrics(sp['y'][idx], pt.argmax(1), EMOTIONS), split=name)
        if p.get('test_each'):
            from fermusic.hparams import final_metrics
            rec.metrics = dict(final_metrics(hist), epochs_done=epochs_run); rec.metrics['accuracy_test'] = rec.metrics['test_accuracy']
        rec.params_count = model.count_params()
        ips = hist['train_images_per_s']
        rec.throughput = dict(train_images_per_s=float(np.median(ips[1:] or ips)), first_epoch_s=hist['epoch_seconds'][0],
                              precision=a.precision, device=str(jax.devices()[0]),
                              device_kind=jax.devices()[0].device_kind)
        if p.get('save') and seed == 0:
            keras.mixed_precision.set_global_policy('float32')          # save a float32 copy: same weights, the kit's dtype
            m32 = p['build'](); m32.set_weights(model.get_weights())
            keras.mixed_precision.set_global_policy(a.precision)
            path = save_for_inference(m32, Path(a.out)/p['save']); rec.update(model_fields(path), model=path.name)
    log(f"{p['name']}: {epochs_run} epochs, stopped {stopped}, " + ', '.join(f"{k} {v['accuracy']:.4f}" for k, v in rec.evaluations.items())
        + f", {time.time() - t_start:.0f} s, record {rec.get('path')}")

def main(argv=None):
    t_start = time.time(); a = parse(argv)
    deadline = t_start + a.minutes * 60 - 15          # 15 s for packing the records
    if os.environ.get('KERAS_BACKEND', 'jax') != 'jax': raise SystemExit('gpu_train.py needs KERAS_BACKEND=jax')
    os.environ['KERAS_BACKEND'] = 'jax'
    import jax, keras
    keras.mixed_precision.set_global_policy(a.precision)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    logf = open(Path(a.out)/'gpu_train.log', 'a')
    def log(msg):
        line = f'[{time.time() - t_start:6.1f}s] {msg}'; print(line, flush=True); logf.write(line + '\n'); logf.flush()
    log(f'devices {jax.devices()}, keras {keras.__version__}, jax {jax.__version__}, policy {a.precision}')
    d = load_data(a.data, a)
    xd = jax.device_put(d['x'][..., None])                # every face, uint8, once: batches are gathered on the device
    log(f"data: {len(d['x'])} faces on {xd.devices()}, FER+ labels {'yes' if 'ferplus' in d else 'no'}")
    seeds = [int(v) for v in str(a.seed).split(',')]
    for seed in seeds:
        for p in plan(a):
            if deadline - time.time() < 45:
                log(f"{p['name']} seed {seed}: skipped, {deadline - time.time():.0f} s left"); continue
            train(p, d, xd, a, deadline, log, seed)
    log('done')

if __name__ == '__main__': main()
