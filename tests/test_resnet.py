"Bad input and edge cases of `fermusic.resnet` (the lesson nbs/40_cnn_vs_resnet.ipynb covers the normal paths)."
import time
import numpy as np, pytest
import keras
import fermusic.resnet as R
from fermusic.train import TimeBudget, standard_callbacks
from fermusic.resnet import (custom_cnn, resnet50, resolve_weights, freeze_before, build_model, run_name, run_shinde,
                             shinde_settings, pick_records, table1, PretrainedWeightsError, PAPER_TABLE1)
from fermusic.train import save_for_inference
from fermusic.train import load_model, predict_proba

@pytest.fixture
def no_network(monkeypatch, tmp_path):
    "No Keras cache and no reachable download host."
    monkeypatch.setenv('KERAS_HOME', str(tmp_path/'keras'))
    monkeypatch.setattr(R, 'download_available', lambda *a, **k: False)

def test_imagenet_without_network_says_how_to_fix(no_network):
    with pytest.raises(PretrainedWeightsError, match='cannot be downloaded') as e: resnet50(48, weights='imagenet')
    assert 'weights=' in str(e.value) and R.IMAGENET_NOTOP in str(e.value)

def test_imagenet_here_fails_fast_or_works(monkeypatch, tmp_path):
    "On a closed network the real check gives up within its timeout instead of hanging in a download."
    monkeypatch.setenv('KERAS_HOME', str(tmp_path/'keras'))
    if R.download_available(timeout=3): pytest.skip('the weights can be downloaded here: Keras would fetch them')
    t0 = time.perf_counter()
    with pytest.raises(PretrainedWeightsError, match='cannot be downloaded'): resolve_weights('imagenet', timeout=2)
    assert time.perf_counter() - t0 < 10

def test_unreachable_download_times_out():
    t0 = time.perf_counter()
    assert not R.download_available('http://10.255.255.1:9/notop.h5', timeout=1)   # unroutable: would hang without a timeout
    assert time.perf_counter() - t0 < 5

@pytest.mark.parametrize('w', ['/no/such/file.h5', 'resnet', 'ImageNet '])
def test_missing_or_unknown_weights(w):
    with pytest.raises(PretrainedWeightsError, match='no such weights file'): resnet50(48, weights=w)

def test_corrupt_weights_file(tmp_path):
    bad = tmp_path/'bad.h5'; bad.write_bytes(b'not hdf5')
    with pytest.raises(PretrainedWeightsError, match='could not load ResNet50 weights'): resnet50(32, weights=bad)

def test_local_weights_file_loaded_and_frozen(tmp_path):
    src = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    f = tmp_path/'notop.weights.h5'; src.save_weights(f)
    m = resnet50(32, weights=f, fine_tune_from='conv4')
    bb = m.get_layer('resnet50')
    for a, b in zip(bb.weights, src.weights): np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    first = next(i for i, l in enumerate(bb.layers) if l.name.startswith('conv4'))
    assert not any(l.trainable for l in bb.layers[:first]) and all(l.trainable for l in bb.layers[first:])
    assert m.name == 'resnet50_pretrained_32'

def test_from_scratch_trains_everything():
    bb = resnet50(32, weights=None, fine_tune_from='conv5').get_layer('resnet50')
    assert all(l.trainable for l in bb.layers)
    assert freeze_before(bb, None) == 0 and all(l.trainable for l in bb.layers)
    with pytest.raises(ValueError, match='no layer'): freeze_before(bb, 'block9')

def test_bad_sizes_and_names():
    with pytest.raises(ValueError, match='at least 32'): resnet50(31)
    with pytest.raises(ValueError, match='too small'): custom_cnn(15)
    s = shinde_settings()
    with pytest.raises(ValueError, match='unknown model'): build_model('vgg16', s)
    with pytest.raises(ValueError, match='unknown model'): run_name('vgg16', s)
    with pytest.raises(ValueError, match='unknown model'): run_shinde('vgg16', s, data={})

def test_overrides_checked(monkeypatch):
    monkeypatch.setenv('FERMUSIC_OVERRIDES', '{"epoch": 3}')
    with pytest.raises(ValueError, match='unknown settings'): shinde_settings()
    monkeypatch.setenv('FERMUSIC_OVERRIDES', '{"weights": null, "resnet_size": 48}')
    s = shinde_settings('full')
    assert s['weights'] is None and run_name('resnet50', s) == 'resnet50-scratch-48px'

def test_saved_resnet_takes_raw_pixels(tmp_path):
    m = resnet50(32)
    p = save_for_inference(m, tmp_path/'r.keras')
    m2 = load_model(p)                    # the custom preprocessing layer is registered
    x = np.random.default_rng(0).integers(0, 256, (2, 48, 48)).astype('uint8')
    np.testing.assert_allclose(predict_proba(m2, x), predict_proba(m, x), atol=1e-5)
    with pytest.raises(ValueError, match='resize first'): predict_proba(m2, np.zeros((1, 32, 32), 'uint8'))

def test_shinde_settings_give_the_frames_callbacks():
    "Shinde's settings ask the run frame for early stopping and LR reduction on the validation loss, and its time budget."
    s = dict(shinde_settings('full'), time_budget_min=5)
    es, lr, tb = standard_callbacks(s, monitor='val_loss')
    assert (es.monitor, es.patience, es.restore_best_weights) == ('val_loss', 5, True)
    assert (lr.monitor, lr.factor, lr.patience, lr.min_lr) == ('val_loss', 0.5, 2, 1e-6)
    assert isinstance(tb, TimeBudget) and tb.budget == 300
    assert len(standard_callbacks(dict(s, time_budget_min=None), monitor='val_loss')) == 2

def test_full_runs_resume(monkeypatch, tmp_path):
    "A resumable run paused by its time budget after one epoch continues from its checkpoint when started again."
    from fermusic.train import RunPaused
    monkeypatch.setenv('FERMUSIC_STATE', str(tmp_path))
    s = dict(shinde_settings('quick'), train_subset=35, epochs=2, batch_size=16, resumable=True, time_budget_min=1e-6)
    data = R.load_train_test()
    with pytest.raises(RunPaused, match='paused after epoch 1 of 2'): run_shinde('cnn', s, data=data, save_record=False)
    assert (tmp_path/'shinde'/'cnn-48px'/'seed0'/'checkpoint.npz').exists()
    rec, _, ev = run_shinde('cnn', dict(s, time_budget_min=None), data=data, save_record=False)
    assert (rec.schedule['epochs_run'], rec.schedule['stopped'], len(rec.schedule['resumes'])) == (2, 'planned_end', 2)
    assert ev['n'] == data['test'].n
    s = dict(shinde_settings('full'), **R.SHINDE_RESNET_CPU)
    assert run_name('resnet50', s) == 'resnet50-scratch-48px' and s['resumable']

def test_tables_without_or_with_partial_records():
    rec = dict(name='cnn-48px', started='2', evaluations=dict(test=dict(accuracy=0.5, precision=0.5, recall=0.5, f1=0.5, error_rate=0.5)))
    picked = pick_records({'cnn-48px': [rec], 'cnn-64px': [dict(name='cnn-64px', started='3')]})   # a record without evaluations is passed over
    assert picked['cnn']['name'] == 'cnn-48px' and 'resnet50' not in picked
    assert pick_records({'resnet50-imagenet-224px': [dict(rec, name='resnet50-imagenet-224px', started='1')],
                         'resnet50-scratch-48px': [dict(rec, name='resnet50-scratch-48px')]})['resnet50']['name'] == 'resnet50-imagenet-224px'
    assert table1(PAPER_TABLE1).loc['total'].tolist() == [28709, 28709, 7178, 7178]
