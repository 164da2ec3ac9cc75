"The prepared GPU command (benchmarks/gpu_run.sh), dry-run on the CPU with JAX at a tiny scale: pack, train, record, return."
import json, os, subprocess, sys, tarfile
from pathlib import Path
import numpy as np, pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'benchmarks'))
pytest.importorskip('jax')

def test_pack_roundtrip(tmp_path):
    "A bundle rebuilds the faces, labels and splits exactly, duplicates included; a corrupt one is refused."
    from pack_fer2013 import pack, unpack
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (70, 48, 48), dtype=np.uint8); x[5] = x[3]
    y, u = rng.integers(0, 7, 70), np.array(['Training'] * 50 + ['PublicTest'] * 10 + ['PrivateTest'] * 10)
    d = pack(x, y, u, tmp_path/'b', codec='png')
    assert d['distinct'] == 69
    b = unpack(tmp_path/'b')
    assert (b['x'] == x).all() and (b['y'] == y).all() and (b['usage'] == u).all()
    from pack_fer2013 import add_landmarks   # Han's dlib landmarks travel in meta.npz, exactly (whole pixels)
    pts = rng.integers(0, 48, (70, 68, 2)).astype(np.float32); n = rng.integers(0, 2, 70)
    add_landmarks(tmp_path/'b', dict(landmarks=pts, n_faces=n, outside=n == 0))
    b = unpack(tmp_path/'b')
    assert (b['landmarks'] == pts).all() and (b['n_faces'] == n).all() and (b['outside'] == (n == 0)).all() and (b['x'] == x).all()
    rows = np.arange(60, 70)   # the disturbed test faces' re-detected landmarks: per row, zeros elsewhere
    add_landmarks(tmp_path/'b', dict(landmarks=pts, n_faces=n, outside=n == 0), dict(dark=pts[rows][::-1]), rows)
    b = unpack(tmp_path/'b')
    assert (b['robust_dark'][rows] == pts[rows][::-1]).all() and (b['robust_dark'][:60] == 0).all() and (b['landmarks'] == pts).all()
    with pytest.raises(ValueError, match='dark landmarks of shape'):
        add_landmarks(tmp_path/'b', dict(landmarks=pts, n_faces=n, outside=n), dict(dark=pts[:3]), rows)
    with pytest.raises(ValueError, match='whole pixels'): add_landmarks(tmp_path/'b', dict(landmarks=pts + 0.5, n_faces=n, outside=n))
    with pytest.raises(ValueError, match='for 70 faces'): add_landmarks(tmp_path/'b', dict(landmarks=pts[:9], n_faces=n, outside=n))
    with np.load(tmp_path/'b'/'meta.npz') as z: meta = {k: z[k] for k in z.files}
    meta['index'][5] = 0; np.savez(tmp_path/'b'/'meta.npz', **meta)
    with pytest.raises(ValueError, match='SHA-256'): unpack(tmp_path/'b')

def test_stages(tmp_path):
    "A bundle split into stages (one device call each) joins back into the same data; a missing stage is named."
    import shutil
    from pack_fer2013 import pack, unpack, plan_stages, join_stages
    MiB = 2**20
    plan = plan_stages({'tile-00.jxl': 5 * MiB, 'tile-01.jxl': 5 * MiB, 'tile-02.jxl': 5 * MiB, 'meta.npz': MiB},
                       room=11 * MiB, last_room=6 * MiB)
    assert plan == [['tile-00.jxl', 'tile-01.jxl'], ['tile-02.jxl', 'meta.npz']], plan
    small_last = plan_stages({'tile-00.jxl': 5 * MiB, 'tile-01.jxl': 5 * MiB, 'meta.npz': MiB}, 11 * MiB, 2 * MiB)
    assert small_last[-1] == ['meta.npz'] and all(sum(5 * MiB for f in p if f != 'meta.npz') <= 11 * MiB
                                                  for p in small_last), small_last
    with pytest.raises(ValueError, match='larger than one call'): plan_stages({'a': 9 * MiB, 'meta.npz': 1}, 8 * MiB, 8 * MiB)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (9000, 48, 48), dtype=np.uint8)   # 3 tiles of 4,096 faces
    y, u = rng.integers(0, 7, 9000), np.array(['Training'] * 8000 + ['PrivateTest'] * 1000)
    d = pack(x, y, u, tmp_path/'full'/'fer2013', codec='png')
    files = d['files']; assert len(files) == 4
    base = tmp_path/'gpu'
    room = max(files.values()) + 1   # one full tile per call
    plan = plan_stages(files, room, room)
    assert all(sum(files[f] for f in p) <= room for p in plan) and len(plan) == 3, plan   # tile-02 (808 faces) + meta
    for k, names in enumerate(plan, 1):
        (base/f'stage-{k}'/'fer2013').mkdir(parents=True)
        for n in names: shutil.copy2(tmp_path/'full'/'fer2013'/n, base/f'stage-{k}'/'fer2013'/n)
    shutil.rmtree(base/'stage-2')
    with pytest.raises(FileNotFoundError, match='have not arrived'): join_stages(base)
    shutil.rmtree(base/'fer2013')
    (base/'stage-2'/'fer2013').mkdir(parents=True); shutil.copy2(tmp_path/'full'/'fer2013'/'tile-01.png', base/'stage-2'/'fer2013')
    b = unpack(join_stages(base))
    assert (b['x'] == x).all() and (b['y'] == y).all()

STEP_CHECK = """
import sys
import numpy as np, jax, jax.numpy as jnp, keras
from keras import layers
import gpu_train as G
def build():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), layers.Rescaling(1 / 255),
                          layers.Conv2D(4, 3, use_bias=False), layers.BatchNormalization(),
                          layers.ReLU(), layers.Dropout(0.25), layers.Flatten(),
                          layers.Dense(3, activation='softmax')])
    m.compile(keras.optimizers.Adam(1e-2), 'sparse_categorical_crossentropy')
    return m
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (32, 8, 8, 1), dtype=np.uint8)
y = rng.integers(0, 3, 32).astype(np.int32)
m = build(); m.optimizer.build(m.trainable_variables); w0 = [v.numpy() for v in m.variables]
state = tuple([v.value for v in vs]
              for vs in (m.trainable_variables, m.non_trainable_variables, m.optimizer.variables))
epoch, _ = G.make_fns(m, dict(size=8, channels=1, augment={}), 8, 2)
key, idx = jax.random.PRNGKey(1), jnp.arange(32, dtype=jnp.int32)
(tv, ntv, ov), loss, _ = epoch(state, key, jnp.asarray(x), jnp.asarray(y), idx)
order = np.asarray(jax.random.permutation(jax.random.split(key)[0], idx))[:16].reshape(2, 8)
k = build()
for v, w in zip(k.variables, w0): v.assign(w)
ls = [float(k.train_on_batch(x[o], y[o])) for o in order]   # Keras' own step, same batches
pairs = [*zip(tv, k.trainable_variables), *zip(ntv, k.non_trainable_variables)]
for a, b in pairs:   # weights, BN moving statistics, dropout seed states
    np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=b.path)
assert abs(float(loss) - np.mean(ls)) < 1e-4, (float(loss), ls)
print('same', len(pairs))
"""

RECAL_CHECK = STEP_CHECK.split("epoch, _ = G.make_fns")[0] + """
from fermusic.train import recalibrate_bn
recal = G.bn_recalibrator(m, dict(batch=8), np.arange(32), seed=0, n=6)
s1, s2 = recal(state, jnp.asarray(x)), recal(state, jnp.asarray(x))
bn = [l for l in m.layers if isinstance(l, layers.BatchNormalization)][0]
assert bn.momentum == 0.99 and all((np.asarray(a) == np.asarray(b)).all() for a, b in zip(s1[1], s2[1]))
order = np.random.default_rng(0).permutation(32)          # the batches it names: 4 of 8, cycled to 6
k = build()
for v, w in zip(k.variables, w0): v.assign(w)
recalibrate_bn(k, [x[order[i * 8:(i + 1) * 8]] for i in range(4)], n=6)   # the lesson's own, eagerly
pairs = list(zip(s1[1], k.non_trainable_variables))
for a, b in pairs:
    np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=b.path)
assert not np.allclose(np.asarray(s1[1][0]), 0)             # the moving mean moved from its start
print('same', len(pairs))
"""

def _jax_check(code: str, want: str):
    "Run `code` in a fresh JAX-backend Python with benchmarks/ importable; it must exit 0 printing `want`."
    env = dict(os.environ, KERAS_BACKEND='jax', PYTHONPATH=os.pathsep.join(
        [str(ROOT/'benchmarks'), str(ROOT), os.environ.get('PYTHONPATH', '')]))
    r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and want in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]

@pytest.mark.slow   # seconds of CPU (a minute on a loaded machine): run with `pytest -m slow`
def test_recalibrator_equals_recalibrate_bn():
    "The loop's BN re-estimation (compiled once, same batches each call) equals the lesson's `recalibrate_bn`."
    _jax_check(RECAL_CHECK, 'same')

@pytest.mark.slow   # 15 s of CPU (minutes on a loaded machine): run with `pytest -m slow`
def test_epoch_equals_keras_steps():
    "Two steps of the loop's epoch on a BatchNorm + Dropout model equal Keras' own `train_on_batch`."
    _jax_check(STEP_CHECK, 'same 8')

@pytest.mark.slow   # about a minute: run with `pytest -m slow` after changing benchmarks/ (CONTRIBUTING.md)
def test_gpu_run_dry(tmp_path):
    "gpu_run.sh on the shipped sample: Yu's CNN8, Shinde's CNN and one Ugochukwu run, 2 epochs each, records and model come back in OUT."
    from pack_fer2013 import pack
    from fermusic.data import load_fer2013
    f = load_fer2013(ROOT/'data'/'fer2013_sample')
    pack(f.x, f.y, f.split, tmp_path/'fer', codec='png')
    out = tmp_path/'out'
    env = dict(os.environ, OUT=str(out), KERAS_BACKEND='jax', PATH=f'{Path(sys.executable).parent}:{os.environ["PATH"]}')
    cmd = ['bash', str(ROOT/'benchmarks'/'gpu_run.sh'), '--data', str(tmp_path/'fer'), '--profile', 'quick', '--allow-cpu', '--minutes', '8',
           '--runs', 'yu,shinde-cnn,ugochukwu', '--ugo-lrs', '0.001', '--limit', '70', '--epochs', '2', '--batch', '2', '--steps', '1',
           '--eval-batch', '16', '--size', '32']
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names[:2] == ['cnn8_fer2013.keras.part-00', 'cnn8_fer2013.keras.part-01'] and 'records.tgz' in names and len(names) <= 8, names
    with tarfile.open(out/'records.tgz') as t:
        recs = {m.name.split('/')[2]: json.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith('.json')}
    yu, ugo = recs['yu2020'], recs['ugochukwu']
    assert yu['name'] == 'cnn8-7x7' and yu['profile'] == 'quick' and yu['hardware']['keras_backend'] == 'jax'
    assert yu['epochs_run'] == 2 and yu['schedule']['stopped'] == 'planned_end' and yu['params']['precision'] == 'mixed_bfloat16'
    assert set(yu['evaluations']) == {'PrivateTest', 'PublicTest'} and yu['evaluations']['PrivateTest']['n'] == 17
    assert yu['dataset']['train'] + yu['dataset']['val'] == 70 and yu['params']['lr'] == 1e-4
    assert ugo['name'] == 'ugochukwu-lr0.001-e50-d2-b64' and len(ugo['history']['test_accuracy']) == 2
    sh = recs['shinde']['dataset']   # Table 1's class counts: Training (train + val) and the test faces
    assert sum(sh['class_counts']['train'].values()) == sh['train'] + sh['val'] == 70, sh
    assert sum(sh['class_counts']['test'].values()) == sh['test'] and list(sh['class_counts']['test'])[0] == 'angry', sh
    model = tmp_path/'m.keras'
    model.write_bytes(b''.join((out/n).read_bytes() for n in names if n.startswith('cnn8_fer2013.keras.part-')))
    from fermusic.train import load_model
    m = load_model(model)
    assert m.dtype_policy.name == 'float32' and m.count_params() == 6405895

def test_new_runs_plan():
    "compact and han-* follow the kit's own settings (COMPACT_FULL; Han's converge schedule to 500 epochs); bad names are refused."
    import gpu_train as G
    from fermusic.compact import COMPACT_FULL, _AUG
    from fermusic.multimodal import HAN_ABLATIONS_CPU, HAN_FULL
    assert set(G.DEFAULT_RUNS) < set(G.RUNS) and G.parse([]).runs == ','.join(G.DEFAULT_RUNS)
    c, img, vgg, res = G.plan(G.parse(['--runs', 'compact,han-image,han-vgg16,han-resnet50']))
    assert (c['name'], c['paper'], c['batch'], c['epochs'], c['early'], c['reduce']) == (
        'compact', 'kit', 32, 1000, ('val_accuracy', 50), ('val_loss', 0.5, 12, 1e-6))
    assert c['augment'] == _AUG and c['kit_augment'] and c['val'] == ('fraction', COMPACT_FULL['val_fraction'])
    assert [t for t, _ in c['tests']] == ['PrivateTest', 'PublicTest'] and c['ship'] == 'data/models/compact_fer2013.keras'
    assert [p['name'] for p in (img, vgg, res)] == ['image-fer2013', 'vgg16-fer2013', 'resnet50-fer2013']
    for p in (img, vgg, res):
        assert p['paper'] == 'han' and p['epochs'] == HAN_FULL['epochs'] == 500 and p['factor'] == 1 and p['split_seed'] == 0
        assert p['early'] == ('val_accuracy', HAN_ABLATIONS_CPU['patience']) and p['reduce'][2] == HAN_ABLATIONS_CPU['lr_patience']
        assert p['tests'] == [('test', ['PrivateTest'])] and p['han']['tta'] == 10 and p['recalibrate'] == 60
        assert p['val_recalibrate'] is True is HAN_ABLATIONS_CPU['val_recalibrate']   # as the lesson scores validation
    assert G.plan(G.parse(['--runs', 'han-vgg16', '--han-factor', '30']))[0]['factor'] == 30
    fu, il, ih = G.plan(G.parse(['--runs', 'han-fusion,han-image+landmarks,han-image+hog']))
    from fermusic.multimodal import HAN_FER2013_CPU
    assert [p['name'] for p in (fu, il, ih)] == ['fusion-fer2013', 'image+landmarks-fer2013', 'image+hog-fer2013']
    assert [p['landmarks'] for p in (fu, il, ih, img, vgg)] == [True, True, False, False, False]
    for p in (fu, il, ih, img):   # the lesson's moves on the device, one schedule for the fusion network and its ablations
        assert callable(p['inputs']) and not p['kit_augment'] and p['early'] == ('val_accuracy', HAN_FER2013_CPU['patience'])
    assert vgg['inputs'] is None and vgg['kit_augment']
    with pytest.raises(SystemExit, match='han-image\\+hog'): G.plan(G.parse(['--runs', 'han-hog']))
    with pytest.raises(SystemExit, match='unknown run'): G.plan(G.parse(['--runs', 'han']))

AUG_CHECK = """
import numpy as np, jax, jax.numpy as jnp
import gpu_train as G
x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (6, 48, 48, 1)).astype('float32'))
f = jax.jit(G.kit_augment(dict(rotation=10, translation=0.1, zoom=0.1, flip=True)))
a, b, c = (np.asarray(f(jax.random.PRNGKey(k), x)) for k in (1, 1, 2))
assert a.dtype == np.float32 and a.shape == x.shape and (a == b).all() and not (a == c).all()
assert not np.isclose(a, np.asarray(x)).all(axis=(1, 2, 3)).any()   # every face moved
flip = G.kit_augment(dict(flip=True))
for k in range(4):                                                   # flips alone: each face as it was or mirrored
    y = np.asarray(flip(jax.random.PRNGKey(k), x))
    assert all((yi == xi).all() or (yi == xi[:, ::-1]).all() for yi, xi in zip(y, np.asarray(x)))
assert G.kit_augment({}) is None
print('moved')
"""

MOVE_CHECK = """
import numpy as np, jax, jax.numpy as jnp
from skimage.transform import AffineTransform
import gpu_train as G
from fermusic.data import load_fer2013
from fermusic.faces import hog_features
from fermusic.multimodal import transform_faces, HAN_FULL
import fermusic, pathlib
f = load_fer2013(pathlib.Path(fermusic.__file__).parents[1]/'data'/'fer2013_sample', add_channel=True)
x = np.asarray(f.x[:40]); rng = np.random.default_rng(0)
pts = rng.integers(0, 48, (40, 68, 2)).astype(np.float32)
th, dx, dy = rng.uniform(-0.2, 0.2, 40), *rng.uniform(-4.8, 4.8, (2, 40))
c = 23.5   # lesson 20's random_affine, with these angles and shifts
tf = [AffineTransform(translation=(-c, -c)) + AffineTransform(rotation=t) + AffineTransform(translation=(c + a, c + b))
      for t, a, b in zip(th, dx, dy)]
want = transform_faces(x, pts, tf)
img, mp = G.move_faces(jnp.asarray(x, 'float32'), jnp.asarray(pts), *(jnp.asarray(v, 'float32') for v in (th, dx, dy)))
img, mp = np.asarray(img), np.asarray(mp)
assert np.abs(img - want['image']).max() <= 1 and (img == want['image']).mean() > 0.999   # rounding of a few pixels
np.testing.assert_allclose(mp, want['landmarks'], atol=1e-4)
S = dict(HAN_FULL, rotation=10., translation=0.1)
fn = jax.jit(G.han_inputs('fusion', S))
data, idx = dict(x=jnp.asarray(x), pts=jnp.asarray(pts)), jnp.arange(8)
plain, a, b = fn(None, data, idx), fn(jax.random.PRNGKey(1), data, idx), fn(jax.random.PRNGKey(1), data, idx)
assert sorted(plain) == ['hog', 'image', 'landmarks'] and plain['hog'].shape == (8, 900) and plain['landmarks'].shape == (8, 136)
np.testing.assert_allclose(np.asarray(plain['hog']), hog_features(x[:8], progress=False), atol=1e-6)   # scikit-image's
assert all((np.asarray(a[k]) == np.asarray(b[k])).all() for k in a) and not (np.asarray(a['image']) == x[:8]).all()
print('moved alike')
"""

def test_move_faces_equals_lesson():
    "The device's moves equal lesson 20's `transform_faces` (scikit-image warp): landmarks to 1e-4 px, pixels to rounding; "
    "`han_inputs` gives the fusion network its three inputs, the same for the same key."
    _jax_check(MOVE_CHECK, 'moved alike')

def test_kit_augment():
    "The kit's augmentation layers as a pure function on the device: same key, same moves; another key, other moves."
    _jax_check(AUG_CHECK, 'moved')

@pytest.mark.slow   # several minutes of CPU (compiles two models): run with `pytest -m slow` after changing benchmarks/
def test_gpu_run_compact_han_dry(tmp_path):
    "gpu_run.sh --runs compact,han-image on the sample: records as run_compact / run_fer2013 write them, each stopped by its "
    "patience; the compact model comes back whole; a call with too little time left skips every run and writes nothing."
    import hashlib
    from pack_fer2013 import pack, add_landmarks
    from fermusic.data import load_fer2013
    f = load_fer2013(ROOT/'data'/'fer2013_sample')
    nonface = np.arange(len(f.y)) % 7 == 0
    pack(f.x, f.y, f.split, tmp_path/'fer', codec='png', nonface=nonface)
    rng = np.random.default_rng(0); n_faces = (np.arange(len(f.y)) % 5 != 0).astype(int)   # made-up landmarks: the plumbing
    add_landmarks(tmp_path/'fer', dict(landmarks=rng.integers(10, 38, (len(f.y), 68, 2)), n_faces=n_faces, outside=n_faces == 0))
    out = tmp_path/'out'
    env = dict(os.environ, OUT=str(out), KERAS_BACKEND='jax', FERMUSIC_OVERRIDES='{"patience": 1}',
               PATH=f'{Path(sys.executable).parent}:{os.environ["PATH"]}')
    cmd = ['bash', str(ROOT/'benchmarks'/'gpu_run.sh'), '--data', str(tmp_path/'fer'), '--profile', 'quick', '--allow-cpu',
           '--runs', 'compact,han-image', '--limit', '70', '--epochs', '6', '--batch', '4', '--steps', '1', '--eval-batch', '16']
    r = subprocess.run(cmd + ['--minutes', '25'], env=env, capture_output=True, text=True, timeout=1600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == ['compact_fer2013.keras', 'console.log', 'device.txt', 'records.tgz'], names
    with tarfile.open(out/'records.tgz') as t:
        recs = {m.name.split('/')[2]: json.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith('.json')}
    c, h = recs['kit'], recs['han']
    for rec in (c, h):   # patience 1: stopped at the first epoch that did not beat the one before
        s = rec['schedule']
        assert s['stopped'] == 'converged' and rec['best_epoch'] == rec['epochs_run'] - 1 < 6, s
        assert rec['profile'] == 'quick' and rec['hardware']['keras_backend'] == 'jax' and rec['overrides'] == {'patience': 1}
    assert c['name'] == 'compact' and c['params']['lr_patience'] == 12 and c['params']['augment']['zoom'] == 0.1
    assert list(c['evaluations']) == ['PrivateTest', 'PublicTest'] and c['metrics']['accuracy'] == c['evaluations']['PrivateTest']['accuracy']
    assert c['dataset']['train'] + c['dataset']['val'] == 70 and c['dataset']['private_test'] == 17 and c['flops_per_image'] == 11040896
    model = (out/'compact_fer2013.keras').read_bytes()
    assert c['model'] == 'data/models/compact_fer2013.keras' and c['model_sha256'] == hashlib.sha256(model).hexdigest()
    from fermusic.train import load_model
    m = load_model(out/'compact_fer2013.keras')
    assert m.dtype_policy.name == 'float32' and m.count_params() == c['params_count'] == 58423
    assert h['name'] == 'image-fer2013' and h['params']['kind'] == 'image' and h['params']['tta'] == 10
    assert h['params']['val_recalibrate'] is True and any('RecalibratedValidation' in n for n in h['notes'])
    assert set(h['evaluations']) == {'test', 'test_single_pass', 'test_ferplus_faces', 'test_detected'} and h['evaluations']['test']['passes'] == 10
    assert h['evaluations']['test_detected']['n'] < 17 and h['dataset']['noise']['images'] == 70 + 17 + 17
    assert h['dataset']['test'] == 17 and h['evaluations']['test_ferplus_faces']['n'] < 17 and 'roc' in h['evaluations']['test']
    assert h['metrics']['mean_class_accuracy'] == h['evaluations']['test']['mean_class_accuracy']
    from fermusic.multimodal import PERTURBATIONS
    assert set(h['robustness']) == set(PERTURBATIONS)
    assert h['robustness']['original'] == h['evaluations']['test_single_pass']['accuracy']
    # too little time left: every run is skipped, nothing half-written comes back
    out2 = tmp_path/'out2'; env['OUT'] = str(out2)
    r = subprocess.run(cmd + ['--minutes', '0.6'], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and 'compact seed 0: skipped' in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in out2.iterdir()) == ['console.log', 'device.txt']

@pytest.mark.slow   # several minutes of CPU (compiles the fusion network): run with `pytest -m slow` after changing benchmarks/
def test_gpu_run_fusion_dry(tmp_path):
    "gpu_run.sh --runs han-fusion on the sample: a record as run_fer2013 writes it, robustness read with the re-detected "
    "landmarks the bundle carries; without landmarks in the bundle the call stops before training and names the fix."
    from pack_fer2013 import pack, add_landmarks
    from fermusic.data import load_fer2013
    from fermusic.multimodal import PERTURBATIONS
    f = load_fer2013(ROOT/'data'/'fer2013_sample')
    pack(f.x, f.y, f.split, tmp_path/'bare', codec='png')
    env = dict(os.environ, KERAS_BACKEND='jax', FERMUSIC_OVERRIDES='{"patience": 1}',
               PATH=f'{Path(sys.executable).parent}:{os.environ["PATH"]}')
    cmd = ['bash', str(ROOT/'benchmarks'/'gpu_run.sh'), '--profile', 'quick', '--allow-cpu', '--runs', 'han-fusion',
           '--limit', '70', '--epochs', '3', '--batch', '4', '--steps', '1', '--eval-batch', '16', '--minutes', '25']
    r = subprocess.run(cmd + ['--data', str(tmp_path/'bare')], env=dict(env, OUT=str(tmp_path/'o1')), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode != 0 and 'gpu_prepare.sh --landmarks' in r.stdout + r.stderr and 'epoch 1' not in r.stdout, r.stdout[-2000:]
    pack(f.x, f.y, f.split, tmp_path/'fer', codec='png')
    rng = np.random.default_rng(0); n = len(f.y); te = np.flatnonzero(np.asarray(f.split) == 'PrivateTest')
    n_faces = (np.arange(n) % 5 != 0).astype(int)   # made-up landmarks: the plumbing
    add_landmarks(tmp_path/'fer', dict(landmarks=rng.integers(10, 38, (n, 68, 2)), n_faces=n_faces, outside=n_faces == 0),
                  {k: rng.integers(10, 38, (len(te), 68, 2)) for k in PERTURBATIONS[1:]}, te)
    out = tmp_path/'out'
    r = subprocess.run(cmd + ['--data', str(tmp_path/'fer')], env=dict(env, OUT=str(out)), capture_output=True, text=True,
                       timeout=1600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with tarfile.open(out/'records.tgz') as t:
        (h,) = [json.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith('.json')]
    assert h['name'] == 'fusion-fer2013' and h['params']['kind'] == 'fusion' and h['schedule']['stopped'] in ('converged', 'planned_end')
    assert set(h['evaluations']) == {'test', 'test_single_pass', 'test_detected'} and h['evaluations']['test']['passes'] == 10
    assert set(h['robustness']) == set(PERTURBATIONS) and h['params_count'] > 1e5
    assert h['robustness']['original'] == h['evaluations']['test_single_pass']['accuracy']
    assert any('move_faces' in x and 'hog_ops' in x for x in h['notes']) and not any('undisturbed' in x for x in h['notes'])

def _parallel_call(tmp_path, out, seeds, minutes, extra=(), **env):
    "gpu_run.sh --parallel on the shipped sample (compact, 1 tiny epoch): its result, OUT's names."
    from pack_fer2013 import pack
    from fermusic.data import load_fer2013
    if not (tmp_path/'fer').exists():
        f = load_fer2013(ROOT/'data'/'fer2013_sample')
        pack(f.x, f.y, f.split, tmp_path/'fer', codec='png')
    env = dict(os.environ, OUT=str(out), KERAS_BACKEND='jax',
               PATH=f'{Path(sys.executable).parent}:{os.environ["PATH"]}', **env)
    cmd = ['bash', str(ROOT/'benchmarks'/'gpu_run.sh'), '--data', str(tmp_path/'fer'),
           '--profile', 'quick', '--allow-cpu', '--runs', 'compact', '--seed', seeds, '--parallel',
           '--limit', '70', '--epochs', '1', '--batch', '4', '--steps', '1', '--eval-batch', '16',
           '--minutes', minutes, *extra]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    return r, sorted(p.name for p in out.iterdir())

def test_gpu_run_parallel_failure(tmp_path):
    "gpu_run.sh --parallel: a seed whose process fails fails the call and is named at the end, the "
    "other seed runs on; a bad seed list is refused. (Seconds: with no time left, seed 0 skips.)"
    r, names = _parallel_call(tmp_path, tmp_path/'out', '0,1', '0.6', GPU_RUN_TEST_FAIL_SEED='1')
    out = r.stdout[-3000:] + r.stderr[-3000:]
    assert r.returncode == 2 and '\nparallel: FAILED: seed 1 (exit 2)\n' in r.stdout, out
    assert '--- seed 1 failed; its last lines:\n[seed 1] ' in r.stdout, out
    assert names == ['console.log', 'device.txt'], names   # no seed-S folder, no record left behind
    log = (tmp_path/'out'/'console.log').read_text()
    assert 'compact seed 0: skipped' in log and '[seed 1] ' in log and '--test-fail' in log, log
    for bad in ('0,0', ''):   # a seed twice; none at all
        r, names = _parallel_call(tmp_path, tmp_path/f'bad{bad}', bad, '0.6')
        assert r.returncode == 2 and 'not a whole number >= 0 given once' in r.stdout, r.stdout
        assert names == ['console.log', 'device.txt'], names

@pytest.mark.slow   # two compact compiles at once, ~3 minutes on 2 loaded cores (CONTRIBUTING.md)
def test_gpu_run_parallel_dry(tmp_path):
    "gpu_run.sh --parallel --seed 0,1: two processes at once, merged as one call's: both records, "
    "each saying it ran beside another; seed 0's model once; one console.log naming both; exit 0."
    import hashlib
    r, names = _parallel_call(tmp_path, tmp_path/'out', '0,1', '8')
    out = r.stdout[-3000:] + r.stderr[-3000:]
    assert r.returncode == 0 and 'parallel: all 2 seeds exited 0' in r.stdout, out
    assert names == ['compact_fer2013.keras', 'console.log', 'device.txt', 'records.tgz'], names
    with tarfile.open(tmp_path/'out'/'records.tgz') as t:
        recs = {m.name: json.load(t.extractfile(m))
                for m in t.getmembers() if m.name.endswith('.json')}
    assert sorted(n.split('__')[1] for n in recs) == ['seed0', 'seed1'], list(recs)
    assert all(n.startswith('results/quick/kit/compact__') for n in recs), list(recs)
    by_seed = {rec['seed']: rec for rec in recs.values()}
    for rec in by_seed.values():
        assert rec['throughput']['concurrent_runs'] == 2, rec['throughput']
        assert any('one of 2 gpu_train.py processes' in n for n in rec['notes']), rec['notes']
        assert rec['epochs_run'] == 1 and '--concurrent 2' in rec['command']
    sha = hashlib.sha256((tmp_path/'out'/'compact_fer2013.keras').read_bytes()).hexdigest()
    assert by_seed[0]['model_sha256'] == sha and 'model_sha256' not in by_seed[1]
    log = (tmp_path/'out'/'console.log').read_text()
    for s in (0, 1): assert f'[seed {s}] ' in log and f'compact__seed{s}__' in log, log[-3000:]

def test_gpu_train_stops_without_gpu(tmp_path):
    "gpu_train.py stops at once, saying why, where JAX finds no GPU (no --allow-cpu) or where both names of "
    "the GPU memory fraction are set (a newer jaxlib then refuses the GPU). (Seconds.)"
    env = dict(os.environ, KERAS_BACKEND='jax', JAX_PLATFORMS='cpu', PYTHONPATH=os.pathsep.join(
        [str(ROOT), os.environ.get('PYTHONPATH', '')]))
    cmd = [sys.executable, str(ROOT/'benchmarks'/'gpu_train.py'), '--out', str(tmp_path/'o'), '--data', str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and 'JAX found no GPU' in r.stderr and '--allow-cpu' in r.stderr, r.stderr[-2000:]
    both = dict(env, XLA_CLIENT_MEM_FRACTION='0.4', XLA_PYTHON_CLIENT_MEM_FRACTION='0.4')
    r = subprocess.run(cmd + ['--allow-cpu'], env=both, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and 'are both set' in r.stderr, r.stderr[-2000:]
    assert not (tmp_path/'o'/'results').exists()

def test_gpu_run_variants_refused(tmp_path):
    "gpu_run.sh --variants: a variant that is not a JSON object, or no --parallel, is refused by "
    "name before anything trains. (Seconds.)"
    for i, (v, msg) in enumerate([('{"upsample": 64};{upsample}', "variant 2 '{upsample}': not JSON"),
                                  ('[64]', "variant 1 '[64]': not a JSON object"),
                                  ('{"--seed": "1"}', '--seed is set by gpu_run.sh for every'),
                                  ('{"--runs": ""}', '--runs: "" is not one option value'),
                                  ('{"--runs": ["yu"]}', '--runs: ["yu"] is not one option value')]):
        r, names = _parallel_call(tmp_path, tmp_path/f'v{i}', '0', '0.6', ('--variants', v))
        assert r.returncode == 2 and msg in r.stdout, r.stdout + r.stderr[-2000:]
        assert names == ['console.log', 'device.txt'], names
    r = subprocess.run(['bash', str(ROOT/'benchmarks'/'gpu_run.sh'), '--variants', '{}'],
                       env=dict(os.environ, OUT=str(tmp_path/'np')), capture_output=True, text=True)
    assert r.returncode == 2 and 'add --parallel' in r.stdout, r.stdout + r.stderr

@pytest.mark.slow   # two compact compiles at once, ~3 minutes on 2 loaded cores (CONTRIBUTING.md)
def test_gpu_run_variants_dry(tmp_path):
    "gpu_run.sh --parallel --variants A;B;C --seed 0: one process per variant, each record keeping "
    "its variant's overrides over the caller's, a variant's \"--name\" keys given to its processes "
    "alone as gpu_train.py options, the models named vK-, one console.log, exit 0."
    vs = ('{"widths": [4, 8]}', '{"widths": [4, 8], "stem": 4}',
          '{"--runs": "shinde-cnn", "--precision": "float32"}')
    r, names = _parallel_call(tmp_path, tmp_path/'out', '0', '8', ('--variants', ';'.join(vs)),
                              FERMUSIC_OVERRIDES='{"lr": 0.002}')
    out = r.stdout[-3000:] + r.stderr[-3000:]
    assert r.returncode == 0 and 'parallel: all 3 runs exited 0' in r.stdout, out
    assert names == ['console.log', 'device.txt', 'records.tgz', 'v1-compact_fer2013.keras',
                     'v2-compact_fer2013.keras'], names
    with tarfile.open(tmp_path/'out'/'records.tgz') as t:
        recs = [json.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith('.json')]
    compact = [rec for rec in recs if rec['name'] == 'compact']
    got = sorted((rec['params']['stem'], rec['overrides'], rec['params']['widths'],
                  rec['throughput']['concurrent_runs']) for rec in compact)
    assert got == [(4, {'lr': 0.002, 'widths': [4, 8], 'stem': 4}, [4, 8], 3),
                   (8, {'lr': 0.002, 'widths': [4, 8]}, [4, 8], 3)], got
    (shinde,) = [rec for rec in recs if rec['name'] != 'compact']   # v3 ran Shinde's CNN alone
    assert shinde['paper'] == 'shinde' and shinde['overrides'] == {'lr': 0.002}, shinde['name']
    assert shinde['params']['lr'] == 0.002 and '--runs shinde-cnn' in shinde['command']
    assert shinde['params']['precision'] == 'float32', shinde['params']
    assert {rec['params']['precision'] for rec in compact} == {'mixed_bfloat16'}, compact
    log = (tmp_path/'out'/'console.log').read_text()
    for k in (1, 2, 3): assert f'[v{k} seed 0] ' in log, log[-3000:]
    want = '[v3 seed 0] FERMUSIC_OVERRIDES={"lr": 0.002} --runs shinde-cnn --precision float32'
    assert want in log, log[:2000]
