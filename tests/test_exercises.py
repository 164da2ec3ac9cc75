"""The exercises' answer key (coursework/answer_key.json) against the checks in `fermusic.exercises`."""
import contextlib, io
import pytest
from fermusic.exercises import EXERCISES, load_answer_key, verify_key, passes, check, _wrong

KEY = load_answer_key()


def test_key_and_checks_agree():
    "Every exercise has a key entry and the other way round; no problem between them."
    assert sorted(KEY) == sorted(EXERCISES)
    assert verify_key(KEY) == []


@pytest.mark.parametrize('key', sorted(KEY))
def test_key_answer_passes_and_wrong_fails(key):
    "The key's answer passes its check, a wrong one fails, and `check` never prints the answer."
    a = KEY[key]
    assert passes(key, a['answer']), f"{key}: the key's answer {a['answer']!r} fails its check"
    assert not passes(key, _wrong(a)), f'{key}: the wrong answer {_wrong(a)!r} passes'
    assert not passes(key, None)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(key, _wrong(a)); check(key, None); check(key, a['answer'])
    lines = out.getvalue().splitlines()
    assert 'not yet' in lines[0] and 'Hint:' in lines[0] and 'no answer yet' in lines[1] and lines[2] == f'{key}: right.'
    shown = str(a['answer']) if a['decimals'] is None else f"{float(a['answer']):.{a['decimals']}f}"
    if len(shown) >= 3: assert shown.lower() not in (lines[0] + lines[1]).lower().replace(repr(_wrong(a)).lower(), ''), \
        f'{key}: the question or hint shows the answer {shown}'


def test_every_paper_lesson_checks_its_exercises():
    "Each exercise is called with `check` at the end of its lesson notebook."
    import json
    from fermusic.config import repo_root
    for key, ex in EXERCISES.items():
        nb = json.loads((repo_root()/'nbs'/f'{ex.lesson}.ipynb').read_text(encoding='utf-8'))
        src = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code')
        assert f"check('{key}'," in src, f'{ex.lesson}.ipynb has no check({key!r}, ...) cell'
