"Edge cases of `fermusic.hparams` (the lesson nbs/30_hparams_rafdb.ipynb covers the normal paths): the staged sweep and `fermusic sort`."
import os, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
import fermusic.hparams as H
from fermusic.hparams import (sort_images, sort_summary, SORT_CSV, UnsafeOutputError, StagedGridOracle, pick, PAPER_TABLES,
                              ugo_settings, run_study, run_name, ugochukwu_cnn, distribution_scope, CLAIMS, STAGES)
from fermusic.data import EMOTIONS
from fermusic.train import tiny_cnn
from fermusic.cli import main


# ---------------------------------------------------------------- fermusic sort

@pytest.fixture(scope='module')
def model():
    "A small untrained RGB model at 24x24: sort_images must read that size from it."
    return tiny_cnn((24, 24, 3))

@pytest.fixture
def folder(tmp_path):
    "Six faces (two in a sub-folder, one greyscale, sizes differ), a text file and a truncated PNG."
    src = tmp_path/'in'; (src/'sub').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        a = rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)
        im = Image.fromarray(a).convert('L') if i == 0 else Image.fromarray(a)
        im.save((src/'sub' if i >= 4 else src)/f'f{i}.png')
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(src/'sub'/'f0.png')  # same name as a top-level file
    (src/'readme.txt').write_text('not an image')
    (src/'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    return src

def tree(p):
    return sorted((f.relative_to(p).as_posix(), f.read_bytes()) for f in p.rglob('*') if f.is_file())

def test_sort_copies_never_moves(folder, tmp_path, model):
    before = tree(folder)
    t = sort_images(folder, tmp_path/'out', model=model)
    assert tree(folder) == before
    ok = t[t.status == 'copied']
    assert len(ok) == 7
    for r in ok.itertuples():
        assert (tmp_path/'out'/r.copied_to).read_bytes() == (folder/r.file).read_bytes()
    assert {'sub/f0.png', 'f0.png'} <= set(ok.file)   # same name in two folders: both kept

def test_dry_run_writes_nothing(folder, tmp_path, model):
    t = sort_images(folder, tmp_path/'out', model=model, dry_run=True)
    assert not (tmp_path/'out').exists()
    assert (t.status == 'would copy').sum() == 7
    assert sort_summary(t).startswith('would copy 7 images')

def test_csv_columns_and_probabilities(folder, tmp_path, model):
    sort_images(folder, tmp_path/'out', model=model)
    csv = pd.read_csv(tmp_path/'out'/SORT_CSV)
    assert list(csv.columns) == ['file', 'status', 'emotion', 'confidence', 'copied_to'] + [f'p_{e}' for e in EMOTIONS]
    ok = csv[csv.status == 'copied']
    np.testing.assert_allclose(ok[[f'p_{e}' for e in EMOTIONS]].sum(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(ok.confidence, ok[[f'p_{e}' for e in EMOTIONS]].max(axis=1), atol=1e-6)
    assert set(ok.emotion) <= set(EMOTIONS)

def test_non_images_and_unreadable_counted(folder, tmp_path, model):
    t = sort_images(folder, tmp_path/'out', model=model)
    sk = t[t.status.str.startswith('skipped')].set_index('file').status.to_dict()
    assert sk == {'readme.txt': 'skipped: not an image', 'broken.jpg': 'skipped: unreadable'}
    assert 'skipped 2 files (not an image: 1, unreadable: 1)' in sort_summary(t)

def test_folder_without_images(tmp_path, model):
    src = tmp_path/'in'; src.mkdir(); (src/'a.txt').write_text('x'); (src/'b.png').write_bytes(b'nope')
    t = sort_images(src, tmp_path/'out', model=model)
    assert t.status.tolist() == ['skipped: not an image', 'skipped: unreadable'] and (tmp_path/'out'/SORT_CSV).is_file()

def test_output_inside_input_refused(folder, model):
    with pytest.raises(UnsafeOutputError, match='inside the input folder'): sort_images(folder, folder/'sub'/'out', model=model)
    assert not (folder/'sub'/'out').exists()

def test_input_inside_output_refused(folder, tmp_path, model):
    with pytest.raises(UnsafeOutputError, match='is inside OUTPUT'): sort_images(folder, tmp_path, model=model)

def test_traversal_through_dotdot_refused(folder, tmp_path, model):
    "OUTPUT spelt with .. that resolves into INPUT is still inside it."
    with pytest.raises(UnsafeOutputError, match='inside the input folder'):
        sort_images(folder, tmp_path/'elsewhere'/'..'/'in'/'x', model=model)

@pytest.mark.parametrize('bad', ['../evil', 'a/b', '..', '', '.'])
def test_class_names_must_be_plain_folder_names(folder, tmp_path, model, bad):
    with pytest.raises(UnsafeOutputError, match='not a plain folder name'):
        sort_images(folder, tmp_path/'out', model=model, class_names=(bad,) + EMOTIONS[1:])
    assert not (tmp_path/'out').exists() and not (tmp_path/'evil').exists()

def test_existing_output(folder, tmp_path, model):
    other = tmp_path/'mine'; other.mkdir(); (other/'keep.txt').write_text('precious')
    with pytest.raises(FileExistsError, match='not empty'): sort_images(folder, other, model=model, overwrite=True)
    assert (other/'keep.txt').read_text() == 'precious'
    sort_images(folder, tmp_path/'out', model=model)
    with pytest.raises(FileExistsError, match='pass overwrite=True'): sort_images(folder, tmp_path/'out', model=model)
    assert len(sort_images(folder, tmp_path/'out', model=model, overwrite=True)) == 9
    (tmp_path/'empty').mkdir(); sort_images(folder, tmp_path/'empty', model=model)   # an empty folder is fine
    (tmp_path/'file').write_text('x')
    with pytest.raises(UnsafeOutputError, match='not a folder'): sort_images(folder, tmp_path/'file', model=model)

def test_symlinked_output_refused(folder, tmp_path, model):
    (tmp_path/'target').mkdir(); os.symlink(tmp_path/'target', tmp_path/'link')
    with pytest.raises(UnsafeOutputError, match='link'): sort_images(folder, tmp_path/'link', model=model)

def test_failure_half_way_leaves_nothing(folder, tmp_path, model, monkeypatch):
    calls = []
    def flaky(a, b):
        calls.append(a)
        if len(calls) == 3: raise OSError('disk full')
        return shutil.copy(a, b)
    monkeypatch.setattr(H.shutil, 'copy2', flaky)
    with pytest.raises(OSError, match='disk full'): sort_images(folder, tmp_path/'out', model=model)
    assert not (tmp_path/'out').exists()

def test_model_and_class_names_must_agree(folder, tmp_path, model):
    with pytest.raises(ValueError, match='7 outputs but 3 class names'): sort_images(folder, tmp_path/'out', model=model, class_names=('a', 'b', 'c'))

def test_missing_input(tmp_path, model):
    with pytest.raises(FileNotFoundError, match='no such folder'): sort_images(tmp_path/'nope', tmp_path/'out', model=model)

def test_cli_sort(folder, tmp_path, capsys):
    assert main(['sort', str(folder), str(tmp_path/'out'), '--dry-run']) == 0
    assert 'would copy 7 images' in capsys.readouterr().out and not (tmp_path/'out').exists()
    assert main(['sort', str(folder), str(tmp_path/'out')]) == 0
    assert (tmp_path/'out'/SORT_CSV).is_file()
    assert main(['sort', str(folder), str(tmp_path/'out')]) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert main(['sort', str(folder), str(folder/'o')]) == 2
    assert main(['sort', str(folder), str(tmp_path/'o2'), '--model', str(tmp_path/'none.keras')]) == 2
    assert not (tmp_path/'o2').exists()


# ---------------------------------------------------------------- the staged sweep

def test_pick_rules():
    t = PAPER_TABLES['batch_size']
    assert pick(t, 'min_discrepancy') == 2048 and pick(t, 'max_acc') == 128
    assert isinstance(pick(t, 'max_acc'), int) and isinstance(pick(PAPER_TABLES['lr'], 'max_acc'), float)
    with pytest.raises(ValueError, match='rule must be'): pick(t, 'best')

def _fake_metrics(cfg, observe_epochs=None):
    "Deterministic fake metrics: val prefers lr 0.001, depth 3, batch 128; test prefers lr 0.0001, depth 4; epochs peak at 200."
    def at(e):
        val = 0.5 + (cfg['lr'] == 0.001) * 0.1 + (cfg['depth'] == 3) * 0.05 + (cfg['batch_size'] == 128) * 0.02 - abs(e - 200) / 1e4
        test = 0.5 + (cfg['lr'] == 0.0001) * 0.1 + (cfg['depth'] == 4) * 0.05 - abs(e - 500) / 1e4 + cfg['batch_size'] / 1e5
        return dict(loss=1., accuracy=0.9, val_loss=1., val_accuracy=val, test_loss=1., test_accuracy=test,
                    discrepancy_val=0.9 - val, discrepancy_test=0.9 - test)
    rec = dict(name=run_name(cfg), metrics=at(cfg['epochs']))
    if observe_epochs: rec['observed'] = {str(e): at(e) for e in observe_epochs}
    return rec

@pytest.fixture
def fake_runs(monkeypatch, tmp_path):
    monkeypatch.setenv('FERMUSIC_RESULTS', str(tmp_path/'results'))
    calls = []
    def fake(cfg, data, S, observe=None):
        cfg = {k: cfg[k] for k in STAGES}; calls.append(cfg); return _fake_metrics(cfg, observe)
    monkeypatch.setattr(H, 'train_run', fake)
    return calls

def test_study_walks_the_stages_and_keeps_winners(fake_runs):
    S = ugo_settings('full')
    rep = run_study({'desc': {}}, S, 'report')
    # report: lr by test (0.0001), epochs by test (500), depth by test (4), batch by smallest train-test gap (largest batch)
    assert rep['winners'] == dict(lr=0.0001, epochs=500, depth=4, batch_size=2048)
    assert len(fake_runs) == rep['trials'] == 3 + 1 + 4 + 5    # the epochs experiment is one observed run
    assert {c['epochs'] for c in fake_runs[3:4]} == {1000}
    assert all(c['lr'] == 0.0001 and c['epochs'] == 500 for c in fake_runs[4:])
    val = run_study({'desc': {}}, S, 'val')
    assert val['winners'] == dict(lr=0.001, epochs=200, depth=3, batch_size=128)
    assert list(rep['tables']['epochs'].index) == S['grids']['epochs']

def test_study_resumes_without_redoing_trials(fake_runs):
    S = ugo_settings('full')
    run_study({'desc': {}}, S, 'report'); n = len(fake_runs)
    run_study({'desc': {}}, S, 'report')
    assert len(fake_runs) == n

def test_interrupted_study_resumes(fake_runs, monkeypatch):
    "A crash in the 6th trial stops the study; run again, it re-runs only what was not finished."
    S = ugo_settings('full')
    real = H.train_run
    def crash(cfg, *a, **k):
        if len(fake_runs) == 5: raise KeyboardInterrupt
        return real(cfg, *a, **k)
    monkeypatch.setattr(H, 'train_run', crash)
    with pytest.raises(KeyboardInterrupt): run_study({'desc': {}}, S, 'report')
    done = len(fake_runs); assert done == 5
    monkeypatch.setattr(H, 'train_run', real)
    st = run_study({'desc': {}}, S, 'report')
    assert len(fake_runs) == 13 and st['trials'] == 13

def test_only_the_epochs_run_is_observed(monkeypatch, tmp_path):
    "When the longest epoch count wins, the later experiments' runs at that count are capped runs, not observed ones."
    monkeypatch.setenv('FERMUSIC_RESULTS', str(tmp_path/'results'))
    seen = []
    def fake(cfg, data, S, observe=None):
        cfg = {k: cfg[k] for k in STAGES}; seen.append((cfg, observe))
        m = dict(loss=1., accuracy=0.9, val_loss=1., val_accuracy=0.5, test_loss=1., test_accuracy=0.5, discrepancy_val=.4, discrepancy_test=.4)
        rec = dict(name=run_name(cfg), metrics=m)
        if observe: rec['observed'] = {str(e): dict(m, val_accuracy=0.5 + e / 1e4, test_accuracy=0.5 + e / 1e4) for e in observe}
        return rec
    monkeypatch.setattr(H, 'train_run', fake)
    S = ugo_settings('full')
    assert run_study({'desc': {}}, S, 'report')['winners']['epochs'] == 1000
    assert [(c['depth'], c['batch_size']) for c, o in seen if o] == [(2, 64)] and len(seen) == 13
    assert not H.is_epochs_run(dict(lr=0.001, epochs=1000, depth=3, batch_size=64), S)

def test_new_schedule_does_not_resume_a_stale_study(fake_runs):
    "The tuner state is keyed by the settings: a changed schedule runs its own trials instead of reusing the old oracle's."
    S = ugo_settings('full')
    run_study({'desc': {}}, S, 'report'); n = len(fake_runs)
    S2 = dict(S, epoch_scale=S['epoch_scale'] * 2)
    assert H.tuner_dir(S2) != H.tuner_dir(S) and H.tuner_dir(dict(S, protocols=['val'])) == H.tuner_dir(S)
    run_study({'desc': {}}, S2, 'report')
    assert len(fake_runs) == 2 * n

def test_failed_trial_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv('FERMUSIC_RESULTS', str(tmp_path/'results'))
    def broken(*a, **k): raise ValueError('bad data')
    monkeypatch.setattr(H, 'train_run', broken)
    with pytest.raises(Exception, match='bad data'): run_study({'desc': {}}, ugo_settings('full'), 'report')

def test_oracle_waits_while_a_run_of_the_stage_is_out():
    S = ugo_settings('full')
    o = StagedGridOracle(S, 'report')
    first = o.populate_space('0')
    assert first['status'] == 'RUNNING' and first['values'] == dict(lr=0.01, epochs=50, depth=2, batch_size=64)
    with pytest.raises(ValueError, match='protocol must be'): StagedGridOracle(S, 'peek')

def test_model_depths_and_errors():
    assert ugochukwu_cnn(0, size=16).output_shape == (None, 7)
    assert ugochukwu_cnn(6, size=128).get_layer('extra6').filters == 512
    with pytest.raises(ValueError, match='depth must be'): ugochukwu_cnn(2.5)
    with pytest.raises(ValueError, match='too small'): ugochukwu_cnn(2, size=8)

def test_distribution_scope():
    with distribution_scope(None): pass
    with pytest.raises(ValueError, match='not available'): distribution_scope('everything')

def test_claims_name_records_and_metrics():
    assert all(c.record and c.metric for c in CLAIMS)
    assert {c.record for c in CLAIMS if c.claim.startswith('Choice')} == {'ugochukwu-selection-report', 'ugochukwu-selection-val'}

def test_unknown_dataset():
    S = dict(ugo_settings(), dataset='affectnet')
    with pytest.raises(ValueError, match="dataset must be"): H.load_study_data(S)


# ---------------------------------------------------------------- KerasTuner's distributed mode

_DIST = '''
import os, sys, json, time
sys.path.insert(0, {tests!r})
import fermusic.hparams as H
from test_hparams import _fake_metrics
ran = []
def fake(cfg, data, S, observe=None):
    cfg = {{k: cfg[k] for k in H.STAGES}}; ran.append(H.run_name(cfg)); time.sleep(0.3); return _fake_metrics(cfg, observe)
H.train_run = fake
S = H.ugo_settings('full')
if H.is_tuner_worker():
    H.StudyTuner(H.StagedGridOracle(S, 'report'), {{'desc': {{}}}}, directory=str(H.tuner_dir(S)), project_name='report').search(verbose=0)
    print(json.dumps(dict(ran=ran)))
else:
    print(json.dumps(dict(winners=H.run_study({{'desc': {{}}}}, S, 'report')['winners'], ran=ran)))
'''

@pytest.mark.slow
def test_distributed_chief_and_two_workers(tmp_path):
    "A chief oracle and two worker processes (KerasTuner's distributed mode over gRPC) share out the 13 trials."
    import socket, subprocess, sys, json, time
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    (tmp_path/'dist.py').write_text(_DIST.format(tests=str(Path(__file__).parent)))
    env = dict(os.environ, FERMUSIC_RESULTS=str(tmp_path/'results'), KERASTUNER_ORACLE_IP='127.0.0.1',
               KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL='3')
    run = lambda tid: subprocess.Popen([sys.executable, str(tmp_path/'dist.py')], env=dict(env, KERASTUNER_TUNER_ID=tid),
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    chief = run('chief'); time.sleep(8)
    workers = [run(f'tuner{i}') for i in range(2)]
    try: outs = [json.loads(p.communicate(timeout=240)[0].strip().splitlines()[-1]) for p in [chief, *workers]]
    finally:
        for p in [chief, *workers]: p.kill()
    assert outs[0]['winners'] == dict(lr=0.0001, epochs=500, depth=4, batch_size=2048)   # as in the single-process study
    assert outs[0]['ran'] == []                                                           # the chief only serves the oracle
    ran = outs[1]['ran'] + outs[2]['ran']
    assert len(ran) == len(set(ran)) == 13 and outs[1]['ran'] and outs[2]['ran']
