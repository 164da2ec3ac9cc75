"""The kit's one code path on every installed Keras 3 backend: a real training step, and models that move between backends.

Full-data training runs on GPU machines that have JAX and no TensorFlow, while students run TensorFlow on a
CPU; a model trained on one must be usable on the other."""
import importlib.util, json, os, subprocess, sys
import numpy as np
import pytest

BACKENDS = [b for b in ('tensorflow', 'jax') if importlib.util.find_spec(b)]

TRAIN = r'''
import json, sys, numpy as np, keras
from fermusic.data import load_fer2013
from fermusic.train import tiny_cnn, fit, predict_proba
f = load_fer2013(split='train', add_channel=True)          # the shipped FER2013 sample
x, y = f.x[::4], f.y[::4]                                  # 175 faces: 5 whole batches of 35, one compiled shape
m = tiny_cnn(); w0 = [w.copy() for w in m.get_weights()]
h = fit(m, x, y, epochs=2, batch_size=35, seed=0)
changed = any(not np.allclose(a, b) for a, b in zip(w0, m.get_weights()))
m.save(sys.argv[1]); np.save(sys.argv[2], predict_proba(m, x[:16]))
print(json.dumps(dict(backend=keras.backend.backend(), loss=h['loss'], changed=changed, n=len(x))))
'''

LOAD = r'''
import json, sys, numpy as np, keras
from fermusic.data import load_fer2013
from fermusic.train import load_model, predict_proba
f = load_fer2013(split='train', add_channel=True)
np.save(sys.argv[2], predict_proba(load_model(sys.argv[1]), f.x[::4][:16]))
print(json.dumps(dict(backend=keras.backend.backend())))
'''


def _run(code, backend, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith('FERMUSIC_')}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL='3')
    res = subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "TRAIN run once per backend and shared: (its output, the saved model, its probabilities on 16 faces)."
    done = {}
    def get(backend):
        if backend not in done:
            d = tmp_path_factory.mktemp(backend)
            done[backend] = (_run(TRAIN, backend, d/'m.keras', d/'p.npy'), d/'m.keras', d/'p.npy')
        return done[backend]
    return get


@pytest.mark.parametrize('backend', BACKENDS)
def test_training_step(backend, trained):
    "Two epochs of a small CNN on real faces train (weights move, losses finite) on this backend."
    out, _, probs = trained(backend)
    assert out['backend'] == backend
    assert out['changed'] and all(np.isfinite(out['loss'])) and out['n'] > 100
    p = np.load(probs)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-4)


@pytest.mark.skipif(len(BACKENDS) < 2, reason='needs both TensorFlow and JAX installed')
def test_model_moves_between_backends(trained, tmp_path):
    "A model trained and saved on JAX predicts the same probabilities when loaded on TensorFlow (within 1e-4)."
    _, model, probs = trained('jax')      # the JAX training step above, not trained a second time
    _run(LOAD, 'tensorflow', model, tmp_path/'tf.npy')
    np.testing.assert_allclose(np.load(tmp_path/'tf.npy'), np.load(probs), atol=1e-4)


FUSION_TRAIN = r'''
import json, sys, numpy as np, keras
from fermusic.data import load_fer2013
from fermusic.multimodal import face_features, fusion_model, MultimodalDataset, predict_multimodal
f = load_fer2013(split='train', add_channel=True)
x, y = f.x[::8], f.y[::8]                                  # 88 faces: 2 whole batches of 44, one compiled shape
ft = face_features(x, progress=False)
m = fusion_model(filters=(4, 8, 8), cnn_fcs=(32, 16, 8), lnn_fcs=(16, 8), hnn_fcs=(32, 16, 8), fusion_units=12)
h = m.fit(MultimodalDataset(x, ft['landmarks'], ft['hog'], y, batch_size=44, shuffle=True, augment=True), epochs=2, verbose=0)
m.save(sys.argv[1]); np.save(sys.argv[2], predict_multimodal(m, x[:16], ft['landmarks'][:16], ft['hog'][:16]))
np.savez(sys.argv[3], x=x[:16], landmarks=ft['landmarks'][:16], hog=ft['hog'][:16])   # the same inputs for FUSION_LOAD
print(json.dumps(dict(backend=keras.backend.backend(), loss=h.history['loss'])))
'''

FUSION_LOAD = r'''
import json, sys, numpy as np, keras
from fermusic.multimodal import predict_multimodal
i = np.load(sys.argv[3])                   # the faces and features FUSION_TRAIN predicted
m = keras.saving.load_model(sys.argv[1])   # CBAM is registered on import: no custom_objects needed
np.save(sys.argv[2], predict_multimodal(m, i['x'], i['landmarks'], i['hog']))
print(json.dumps(dict(backend=keras.backend.backend())))
'''


@pytest.mark.skipif(len(BACKENDS) < 2, reason='needs both TensorFlow and JAX installed')
def test_fusion_model_moves_between_backends(tmp_path):
    "The three-branch CBAM network trains on JAX with moved faces and predicts the same on TensorFlow (within 1e-4)."
    out = _run(FUSION_TRAIN, 'jax', tmp_path/'f.keras', tmp_path/'jax.npy', tmp_path/'in.npz')
    assert all(np.isfinite(out['loss']))
    _run(FUSION_LOAD, 'tensorflow', tmp_path/'f.keras', tmp_path/'tf.npy', tmp_path/'in.npz')
    np.testing.assert_allclose(np.load(tmp_path/'tf.npy'), np.load(tmp_path/'jax.npy'), atol=1e-4)
