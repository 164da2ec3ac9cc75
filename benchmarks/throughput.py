#!/usr/bin/env python
"""Training and inference throughput (images/s) of Yu et al.'s CNN (both Table 1 variants) at batch 64.

Measures on whatever Keras backend and device are active (KERAS_BACKEND=tensorflow|jax; a GPU is used when
the backend sees one) and writes a run record: paper='yu2020', name='benchmark-throughput'. Run it with
FERMUSIC_PROFILE=full to keep the record under results/full/ (quick records are git-ignored).

    FERMUSIC_PROFILE=full python benchmarks/throughput.py [--batches 20] [--variants 7x7 3x3]

Not a test: timings depend on the machine and on what else it is running (the record stores the load average).
"""
import argparse, os, time
import numpy as np

def measure(variant, batch_size, batches, warmup, seed=0):
    "Images/s of `train_on_batch` and `predict_on_batch` over `batches` batches after `warmup` untimed ones."
    from fermusic.cnn8 import cnn8
    from fermusic.config import set_seed
    set_seed(seed, deterministic=False)
    model = cnn8(variant)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (batch_size, 48, 48, 1)).astype('float32'); y = rng.integers(0, 7, batch_size)
    for _ in range(warmup): model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(batches): model.train_on_batch(x, y)
    train = batches * batch_size / (time.perf_counter() - t0)
    for _ in range(warmup): np.asarray(model.predict_on_batch(x))
    t0 = time.perf_counter()
    for _ in range(batches): np.asarray(model.predict_on_batch(x))   # np.asarray waits for asynchronous backends
    infer = batches * batch_size / (time.perf_counter() - t0)
    return dict(train_images_per_s=train, inference_images_per_s=infer, params=model.count_params())

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--batches', type=int, default=20, help='timed batches per measurement')
    ap.add_argument('--warmup', type=int, default=3, help='untimed batches first (compilation, caches)')
    ap.add_argument('--variants', nargs='+', default=['7x7', '3x3'])
    ap.add_argument('--no-save', action='store_true', help='print only, write no record')
    a = ap.parse_args(argv)
    from fermusic.records import recording
    params = dict(batch_size=a.batch_size, batches=a.batches, warmup=a.warmup, variants=a.variants, input='48x48x1 random uint8')
    with recording('benchmark-throughput', paper='yu2020', seed=0, params=params,
                   dataset=dict(name='synthetic', note='random pixels: throughput does not depend on content'),
                   save=not a.no_save) as rec:
        rec.load_average_before = os.getloadavg()
        res = {v: measure(v, a.batch_size, a.batches, a.warmup) for v in a.variants}
        rec.load_average_after = os.getloadavg()
        rec.results = res
        rec.metrics = {f'{v}_{k}': r[k] for v, r in res.items() for k in ('train_images_per_s', 'inference_images_per_s')}
        rec.notes.append(f'{os.cpu_count()} CPU cores visible; load average before/after: '
                         f'{rec.load_average_before[0]:.2f}/{rec.load_average_after[0]:.2f} (shared machines read low)')
    for v, r in res.items():
        print(f"{v}: train {r['train_images_per_s']:.1f} images/s, inference {r['inference_images_per_s']:.1f} images/s ({r['params']:,} parameters)")
    if rec.get('path'): print('record:', rec['path'])
    return rec

if __name__ == '__main__': main()
