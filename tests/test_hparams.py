"Edge cases of `fermusic.hparams` (the lesson nbs/30_hparams_rafdb.ipynb covers the normal paths): the staged sweep (sort: tests/test_sort.py)."
import os
from pathlib import Path
import pytest
import fermusic.hparams as H
from fermusic.hparams import (StagedGridOracle, pick, PAPER_TABLES,
                              ugo_settings, run_study, run_name, ugochukwu_cnn, distribution_scope, CLAIMS, STAGES)


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
    assert all(c.record and c.metric for c in CLAIMS if c.evidence != 'inconsistent')   # the report's own arithmetic needs no run
    assert all(c.record is None and callable(c.metric) for c in CLAIMS if c.evidence == 'inconsistent')
    assert {c.record for c in CLAIMS if c.claim.startswith('Choice')} == {'ugochukwu-selection-report', 'ugochukwu-selection-val'}

def _quick_status(root, pred=None):
    "The quick check of `CLAIMS` against a learning-run record predicting `pred` on 210 balanced faces."
    import numpy as np
    from fermusic.data import EMOTIONS
    from fermusic.records import recording
    from fermusic.scoreboard import quick_check
    from fermusic.train import classification_metrics
    y = np.repeat(np.arange(7), 30)
    if pred is not None:
        with recording(H.LEARN_RUN, 'ugochukwu', seed=0, profile='quick', root=root) as r:
            r.add_evaluation(classification_metrics(y, pred(y), EMOTIONS))
    qc = quick_check(CLAIMS, root=root)
    return qc[qc.status != 'no quick check'][['status', 'quick', 'expected']].values.tolist()

def test_quick_check_beats_the_majority(tmp_path):
    "Table 1's chosen run is quick-checked by LEARNS: one class or one face short of the 95% floor fails, one face over passes."
    import numpy as np
    [(st, q, floor)] = _quick_status(tmp_path/'one', lambda y: np.full_like(y, 3))   # all 'happy'
    assert (st, round(q, 4), round(floor, 4)) == ('NOT LEARNING', 0.1429, 0.1966)
    right = lambda k: (lambda y: np.where(np.arange(len(y)) < k, y, (y + 1) % 7))    # the first k right
    assert _quick_status(tmp_path/'41', right(41))[0][0] == 'NOT LEARNING'                # 0.195
    assert _quick_status(tmp_path/'42', right(42))[0][0] == 'ok'                          # 0.200
    assert _quick_status(tmp_path/'none')[0][0] == 'no quick record'
    with pytest.raises(ValueError, match='has no learn_check'): H.learning_run(ugo_settings('full'))


def test_unknown_dataset():
    S = dict(ugo_settings(), dataset='affectnet')
    with pytest.raises(ValueError, match="dataset must be"): H.load_study_data(S)


def test_converged_run_through_the_frame(monkeypatch, tmp_path):
    "With `patience` (the converged Table 1 run) a run stops early, keeps its best epoch's weights and reads its metrics there."
    import numpy as np
    monkeypatch.setenv('FERMUSIC_RESULTS', str(tmp_path/'results')); monkeypatch.setenv('FERMUSIC_STATE', str(tmp_path/'state'))
    rng = np.random.default_rng(0)
    part = lambda n: (rng.integers(0, 256, (n, 16, 16, 3)).astype('uint8'), rng.integers(0, 7, n))
    data = dict(train=part(48), val=part(21), test=part(21), desc=dict(name='random'))
    S = dict(ugo_settings('quick'), epoch_scale=0.1, patience=1, resumable=True)   # 50 report epochs -> 5
    cfg = dict(lr=0.01, epochs=50, depth=0, batch_size=16)
    rec = H.train_run(cfg, data, S)
    sch, h = rec['schedule'], rec['history']
    assert sch['epochs_planned'] == 5 and sch['stopped'] in ('converged', 'planned_end') and len(sch['resumes']) == 1
    assert rec['metrics']['val_accuracy'] == max(h['val_accuracy']) == h['val_accuracy'][sch['best_epoch'] - 1]
    assert rec['params']['key'] != H.run_key(cfg, dict(S, patience=None), data['desc'])   # another run than the study's
    assert (tmp_path/'state'/'ugochukwu'/run_name(cfg)/'seed0'/'checkpoint.npz').exists()
    assert H.train_run(cfg, data, S)['started'] == rec['started']                          # found, not trained again
    with pytest.raises(ValueError, match='set patience=None'): H.train_run(dict(cfg, epochs=100), data, S, observe=[50, 100])


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
