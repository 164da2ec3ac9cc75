"""Importing the kit changes nothing global: no module of `fermusic` writes an environment variable on import.

TensorFlow's own import sets several variables (KMP_*, TPU_*, TF2_BEHAVIOR, ...), so each module is imported
after TensorFlow and Keras, and only what the kit's import changes on top is compared."""
import dataclasses, json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT/'fermusic').glob('*.py') if not p.stem.startswith('_'))

CODE = r'''
import json, os, sys, importlib
import tensorflow, keras                     # what they set is theirs
changed = {}
for m in sys.argv[1:]:                       # one process: each import diffed on its own (a module first imported
    before = dict(os.environ)                # by an earlier one shows up there)
    importlib.import_module('fermusic.' + m)
    after = dict(os.environ)
    d = {k: [before.get(k), after.get(k)] for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if d: changed[m] = d
print(json.dumps(changed))
'''


def test_no_module_import_changes_the_environment():
    env = {k: v for k, v in os.environ.items() if k not in ('TF_CPP_MIN_LOG_LEVEL', 'KERAS_BACKEND')}
    r = subprocess.run([sys.executable, '-c', CODE, *MODULES], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    changed = json.loads(r.stdout.strip().splitlines()[-1])
    assert not changed, f'importing these modules changed os.environ: {changed}'


def test_a_full_record_of_the_shipped_sample_is_refused(tmp_path):
    "The mismatch the settings route exists to prevent: a 'full' record of a run that read the shipped sample."
    from fermusic.records import recording
    with pytest.raises(ValueError, match='shipped sample'):
        with recording('x', 'kit', seed=0, profile='full', dataset=dict(name='fer2013', path='data/fer2013_sample'),
                       root=tmp_path): pass
    assert not list(tmp_path.rglob('*.json'))
    with recording('x', 'kit', seed=0, profile='quick', dataset=dict(path='data/fer2013_sample'), root=tmp_path): pass


def test_kit_env_reflects_the_environment(monkeypatch, tmp_path):
    "The one settings route: `kit_env` (and the accessors built on it) read the variables when called."
    from fermusic import config
    for k in config.KIT_ENV: monkeypatch.delenv(k, raising=False)
    e = config.kit_env()
    assert (e.profile, e.overrides, e.data, e.results, e.command, e.raw) == ('quick', {}, None, None, None, {})
    monkeypatch.setenv(config.PROFILE_ENV, 'full'); monkeypatch.setenv(config.OVERRIDES_ENV, '{"epochs": 3}')
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path/'data')); monkeypatch.setenv(config.RESULTS_ENV, str(tmp_path/'res'))
    monkeypatch.setenv(config.STATE_ENV, str(tmp_path/'st')); monkeypatch.setenv(config.CACHE_ENV, str(tmp_path/'c'))
    monkeypatch.setenv(config.COMMAND_ENV, 'fermusic x'); monkeypatch.setenv(config.THREADS_ENV, '3')
    e = config.kit_env()
    assert (e.profile, e.overrides, e.data, e.results, e.state, e.cache, e.command, e.threads) == (
        'full', {'epochs': 3}, tmp_path/'data', tmp_path/'res', tmp_path/'st', tmp_path/'c', 'fermusic x', 3)
    assert (config.get_profile(), config.get_overrides(), config.results_dir(), config.state_dir()) == (
        'full', {'epochs': 3}, tmp_path/'res', tmp_path/'st')
    assert config.get_profile('quick') == 'quick'   # an argument wins over the variable
    with pytest.raises(dataclasses.FrozenInstanceError): e.profile = 'quick'
    monkeypatch.setenv(config.PROFILE_ENV, 'fast')
    with pytest.raises(ValueError, match=r'from \$FERMUSIC_PROFILE'): config.kit_env()
    monkeypatch.setenv(config.PROFILE_ENV, 'full'); monkeypatch.setenv(config.THREADS_ENV, 'two')
    with pytest.raises(ValueError, match='not a whole number'): config.kit_env()


def test_the_cli_passes_the_profile_down_without_writing_the_environment(monkeypatch, capsys):
    "`fermusic --profile full ...` reaches the function as an argument; os.environ is the same afterwards."
    import fermusic.notebooks, fermusic.scoreboard
    from fermusic.cli import main
    from fermusic.config import KIT_ENV
    for k in KIT_ENV: monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '3')   # main sets it by default only; here it is set already
    seen = []
    monkeypatch.setattr(fermusic.notebooks, 'execute_notebook', lambda nb, **kw: seen.append(kw) or dict(
        notebook=nb, cells=0, seconds=0, profile=kw['profile']))
    monkeypatch.setattr(fermusic.scoreboard, 'reproduce', lambda paper, **kw: seen.append(kw) or dict(status=0))
    before = dict(os.environ)
    assert main(['--profile', 'full', 'nb', 'run', 'x.ipynb']) == 0
    assert main(['reproduce', 'han', '--profile', 'full']) == 0
    assert main(['--profile', 'full', 'data', 'check', 'fer2013']) == 2   # full: only $FERMUSIC_DATA, which is unset
    assert 'not used in the full profile' in capsys.readouterr().err
    assert [s['profile'] for s in seen] == ['full', 'full']
    assert dict(os.environ) == before
