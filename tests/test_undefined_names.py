"""Paths that once raised NameError (names used in a module but imported only in a hidden notebook cell).

tests/test_lint.py keeps the whole package free of undefined names; these tests run the paths themselves."""
import tempfile
from pathlib import Path


def test_han_run_without_model_dir_makes_a_temporary_folder(monkeypatch):
    import fermusic.multimodal as mm
    made = []
    monkeypatch.setattr(mm, 'fer2013_data', lambda S, data_path=None: dict(faces=None))
    monkeypatch.setattr(tempfile, 'mkdtemp', lambda prefix='': made.append(prefix) or str(Path('/nonexistent')))
    assert mm.run_fer2013(dict(seeds=[], models=[])) == []
    assert made == ['han_models_'], 'run_fer2013 without model_dir did not make a temporary folder'


def test_shinde_tables_build_pandas_frames():
    import pandas as pd
    from fermusic.resnet import diagnostics
    assert isinstance(diagnostics({}), pd.DataFrame)
