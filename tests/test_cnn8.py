"Bad input and edge cases of `fermusic.cnn8`, and `run_cnn8` end to end at a tiny scale (lesson 10 covers the normal paths; its 8-epoch run is a slow cell)."
import numpy as np, pytest
import keras
from fermusic.cnn8 import (cnn8, cnn8_settings, save_for_inference, gabor_features,
                           lbp_features, stratified_subset, table2_indices, table2)
from fermusic.train import as_model_input, load_model, predict_proba, TimeBudget

@pytest.fixture(scope='module')
def model(): return cnn8('7x7')

@pytest.fixture(scope='module')
def saved(model, tmp_path_factory):
    return save_for_inference(model, tmp_path_factory.mktemp('m')/'cnn8.keras')

@pytest.mark.parametrize('shape', [(32, 32), (2, 64, 64, 1), (5, 48, 47)])
def test_wrong_size_says_resize(model, shape):
    with pytest.raises(ValueError, match='resize first|expected images'): predict_proba(model, np.zeros(shape, 'uint8'))

def test_channels_converted_or_refused(model):
    rgb = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3)).astype('uint8')
    test = as_model_input(rgb, model.input_shape[1:])
    assert test.shape == (2, 48, 48, 1)                      # documented: RGB -> luma
    np.testing.assert_allclose(test[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-5)
    assert as_model_input(np.zeros((48, 48, 4), 'uint8'), (48, 48, 1)).shape == (1, 48, 48, 1)  # RGBA: alpha dropped
    with pytest.raises(ValueError, match='channels'): predict_proba(model, np.zeros((1, 48, 48, 2), 'uint8'))

@pytest.mark.parametrize('x,msg', [(np.zeros((1, 48, 48), bool), 'dtype'), (np.full((1, 48, 48), 'a'), 'dtype'),
                                   (np.full((1, 48, 48), 0.5, 'float32'), 'scaled to 0-1'),
                                   (np.full((1, 48, 48), 300.), '0-255'), (np.full((1, 48, 48), -1.), '0-255')])
def test_bad_dtype_or_range(model, x, msg):
    with pytest.raises(ValueError, match=msg): predict_proba(model, x)

def test_single_image_and_uint8_accepted(model):
    p = predict_proba(model, np.zeros((48, 48), 'uint8'))
    assert p.shape == (1, 7) and np.isclose(p.sum(), 1, atol=1e-4)

def test_saved_model_roundtrip_without_optimizer(model, saved):
    m = load_model(saved)
    assert not m.compiled and m.count_params() == model.count_params()
    assert saved.stat().st_size < 27e6            # weights only: 6.4 M float32 parameters
    x = np.random.default_rng(1).integers(0, 256, (3, 48, 48, 1)).astype('uint8')
    np.testing.assert_allclose(predict_proba(m, x), predict_proba(model, x), atol=1e-6)

def test_missing_and_corrupt_model_files(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match='no model file'): load_model(tmp_path/'nope.keras')
    bad = tmp_path/'bad.keras'; bad.write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='not a loadable Keras model'): load_model(bad)
    cut = tmp_path/'cut.keras'; cut.write_bytes(saved.read_bytes()[:100_000])
    with pytest.raises(ValueError, match='corrupt or truncated'): load_model(cut)
    h5 = tmp_path/'m.h5'; h5.write_bytes(b'x')
    with pytest.raises(ValueError, match='.keras'): load_model(h5)

def test_bad_settings():
    with pytest.raises(ValueError, match='unknown variant'): cnn8('3x3x')
    with pytest.raises(ValueError, match='unknown optimizer'): cnn8('7x7', optimizer='lbfgs')

def test_overrides_checked(monkeypatch):
    monkeypatch.setenv('FERMUSIC_OVERRIDES', '{"epoch": 3}')
    with pytest.raises(ValueError, match='unknown settings'): cnn8_settings()
    monkeypatch.setenv('FERMUSIC_OVERRIDES', '{"epochs": 3}')
    assert cnn8_settings()['epochs'] == 3 and cnn8_settings()['_overrides'] == {'epochs': 3}

def test_features_refuse_bad_shapes():
    with pytest.raises(ValueError, match='greyscale'): lbp_features(np.zeros((48, 48)))
    with pytest.raises(ValueError, match='grid'): gabor_features(np.zeros((1, 50, 50)), grid=4)

def test_subsets():
    y = np.repeat(np.arange(7), 100)
    idx = stratified_subset(y, 70, seed=3)
    assert len(idx) == 70 and (np.bincount(y[idx]) == 10).all() and (np.diff(idx) > 0).all()
    assert (stratified_subset(y, None) == np.arange(700)).all() and (stratified_subset(y, 10_000) == np.arange(700)).all()
    assert (table2_indices(y, 200) == table2_indices(y, 200)).all()     # fixed draw

def test_time_budget_stops():
    cb = TimeBudget(minutes=0); cb.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    cb.on_train_begin(); cb.on_epoch_end(0)
    assert cb.model.stop_training and cb.stopped_early

def test_tables_without_records():
    assert set(table2({})['ours: whole PrivateTest']) == {'not yet run', 'quoted only'}


def test_all_layers_finds_what_keras_private_walk_finds():
    "`fermusic.train.all_layers` (public `layers` only) lists the layers of `_flatten_layers`, less the inputs."
    import keras
    from fermusic.cnn8 import cnn8
    from fermusic.compact import compact_cnn
    from fermusic.train import all_layers
    for m in (cnn8(), compact_cnn()):
        ours = all_layers(m)
        theirs = [l for l in m._flatten_layers() if not isinstance(l, keras.layers.InputLayer)]
        assert len(ours) == len(theirs) and {id(l) for l in ours} == {id(l) for l in theirs}, m.name

def test_run_cnn8_trains_scores_and_records(tmp_path, monkeypatch):
    "`run_cnn8` end to end on 70 sample faces, one epoch: the record, its two test splits and the saved model (the lesson's 8-epoch run is a slow cell)."
    import json
    from fermusic.cnn8 import run_cnn8, load_fer_splits
    from fermusic.records import model_fields
    monkeypatch.setenv('FERMUSIC_RESULTS', str(tmp_path/'results'))
    sp = load_fer_splits()
    sp['Training'] = sp['Training'][stratified_subset(sp['Training'].y, 70, seed=0)]
    s = dict(cnn8_settings(), epochs=1)
    rec, m, evs = run_cnn8(s, seed=0, splits=sp, model_path=tmp_path/'cnn8.keras')
    assert (rec.profile, rec.epochs_run, rec.dataset['train'] + rec.dataset['val']) == ('quick', 1, 70)
    assert abs(rec.history['loss'][0] - np.log(7)) < 0.15, rec.history['loss']       # untrained: about ln 7
    assert {k: ev['n'] for k, ev in rec.evaluations.items()} == {'PrivateTest': 105, 'PublicTest': 105}
    assert rec.metrics['accuracy'] == evs['PrivateTest']['accuracy']
    assert rec.model_sha256 == model_fields(tmp_path/'cnn8.keras')['model_sha256']
    (f,) = (tmp_path/'results'/'quick'/'yu2020').glob('cnn8-7x7__seed0__*.json')
    saved = json.loads(f.read_text())
    assert saved['schedule']['stopped'] == 'planned_end' and saved['git'] and saved['hardware']['threads']
