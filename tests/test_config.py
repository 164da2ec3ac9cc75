"""Importing the kit changes nothing global: no module of `fermusic` writes an environment variable on import.

TensorFlow's own import sets several variables (KMP_*, TPU_*, TF2_BEHAVIOR, ...), so each module is imported
after TensorFlow and Keras, and only what the kit's import changes on top is compared."""
import json, os, subprocess, sys
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
