"""`fermusic.scoreboard` and `fermusic reproduce`: the README's table is current, the claims are well formed, and
`reproduce` passes, fails and reports as documented (nbs/90_scoreboard.ipynb covers the normal paths)."""
import contextlib, io, re
from pathlib import Path
import nbformat, pytest
import fermusic.scoreboard as SB
from fermusic.scoreboard import (PAPERS, collect_claims, scoreboard, scoreboard_markdown, reproduce, quick_check, VERDICTS)
from fermusic.records import Claim
from fermusic.cli import main, build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_readme_scoreboard_is_current():
    "README.md's scoreboard is what `fermusic scoreboard` prints now (regenerate: fermusic nb run nbs/index.ipynb && fermusic nb readme)."
    readme = (ROOT/'README.md').read_text(encoding='utf-8')
    m = re.search(r'<!-- scoreboard:.*?<!-- /scoreboard -->', readme, re.S)
    assert m, 'README.md has no scoreboard block'
    assert m.group(0) == scoreboard_markdown(), 'the README scoreboard is stale: fermusic nb run nbs/index.ipynb && fermusic nb readme'
    out = io.StringIO()
    with contextlib.redirect_stdout(out): assert main(['scoreboard']) == 0
    assert out.getvalue().strip() == m.group(0)


def test_claims_are_well_formed():
    claims, missing = collect_claims()
    assert {c.paper for c in claims} >= {'yu2020', 'shinde'}
    for c in claims:
        assert c.paper in PAPERS, c
        assert c.tolerance is not None and c.tolerance >= 0, c
        assert c.record is not None or c.reason, f'{c.claim}: a claim without a record must say why'
        assert isinstance(c.metric, str) or callable(c.metric), c
        assert c.quick is None or (len(c.quick) == 2 and c.quick[1] >= 0), c
        assert c.paper_value is None or isinstance(c.paper_value, (int, float)), c
    names = [(c.paper, c.claim) for c in claims]
    assert len(names) == len(set(names)), 'two claims of a paper share a description'
    assert set(scoreboard().verdict) <= set(VERDICTS)


def test_missing_lesson_is_a_row_not_an_error(monkeypatch):
    monkeypatch.setitem(SB.PAPER_LESSONS, 'han', [('20_multimodal', 'no_such_module_yet')])
    claims, missing = collect_claims(['han'])
    assert claims == [] and missing == {'han': ['20_multimodal']}
    b = scoreboard(['han'])
    assert b.verdict.tolist() == ['lesson not merged yet'] and 'no_such_module_yet' in b.reason[0]


def _lesson(path, code):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), path)
    return path

RECORD_HALF = "from fermusic.records import recording\nwith recording('tiny', 'yu2020', seed=0) as r: r.metrics = dict(accuracy=0.5)"


def test_reproduce_passes_fails_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv('FERMUSIC_RESULTS', str(tmp_path/'results'))
    nb = _lesson(tmp_path/'tiny.ipynb', RECORD_HALF)
    kw = dict(profile='quick', notebooks={'yu2020': [nb]}, root=tmp_path/'results')
    lines = []
    res = reproduce('yu2020', out=tmp_path/'ok', claims=[Claim('yu2020', 'tiny', 0.5, 'tiny', quick=(0.5, 0.01))], echo=lines.append, **kw)
    assert res['status'] == 0 and res['quick'].status.tolist() == ['ok']
    assert any(re.match(r'\[1/1\] tiny\.ipynb: ok in [\d.]+ s', l) for l in lines), lines
    assert (tmp_path/'ok'/'report.md').read_text().count('| ok |') >= 1 and (tmp_path/'ok'/'report.html').exists()
    assert (tmp_path/'ok'/'notebooks'/'tiny.ipynb').exists() and list((tmp_path/'results'/'quick'/'yu2020').glob('tiny__*.json'))
    res = reproduce('yu2020', out=tmp_path/'drift', claims=[Claim('yu2020', 'tiny', 0.5, 'tiny', quick=(0.6, 0.05))], echo=lines.append, **kw)
    assert res['status'] == 1 and 'DRIFT' in (tmp_path/'drift'/'report.md').read_text()
    # a claim whose run wrote no record this time is a failure too, not a pass
    res = reproduce('yu2020', out=tmp_path/'gone', claims=[Claim('yu2020', 'other', 0.5, 'other', quick=(0.5, 0.01))], echo=lines.append, **kw)
    assert res['status'] == 1 and res['quick'].status.tolist() == ['no quick record']


def test_reproduce_failing_notebook_and_missing_lesson(tmp_path, monkeypatch):
    monkeypatch.setenv('FERMUSIC_RESULTS', str(tmp_path/'results'))
    lines = []
    res = reproduce('shinde', 'quick', out=tmp_path/'r', notebooks={'shinde': [_lesson(tmp_path/'bad.ipynb', '1/0')]}, claims=[],
                    root=tmp_path/'results', echo=lines.append)
    assert res['status'] == 1 and res['notebooks'][0]['status'] == 'FAILED' and 'ZeroDivisionError' in (tmp_path/'r'/'report.md').read_text()
    res = reproduce('han', 'quick', out=tmp_path/'m', notebooks={'han': [tmp_path/'20_multimodal.ipynb']}, claims=[],
                    root=tmp_path/'results', echo=lines.append)
    assert res['status'] == 1 and any('not merged yet' in l for l in lines), lines


def test_reproduce_a_real_lesson(tmp_path):
    "The recommender lesson (a few seconds) under `reproduce`, checked against its real quick claims."
    from fermusic.recommend import CLAIMS
    lines = []
    res = reproduce('yu2020', 'quick', out=tmp_path/'r', notebooks={'yu2020': [ROOT/'nbs'/'12_recommend.ipynb']}, claims=CLAIMS, echo=lines.append)
    assert res['status'] == 0, (tmp_path/'r'/'report.md').read_text()
    assert res['quick'].status.eq('ok').all() and len(res['quick']) == len(CLAIMS)


def test_cli_reproduce_arguments():
    p = build_parser()
    assert p.parse_args(['reproduce', 'shinde', '--profile', 'full']).profile == 'full'
    assert p.parse_args(['--profile', 'full', 'reproduce', 'shinde']).profile == 'full'   # not reset by the subcommand
    err = io.StringIO()
    with contextlib.redirect_stderr(err): assert main(['reproduce', 'smith']) == 2
    assert 'choose one of yu2020, han, ugochukwu, shinde or all' in err.getvalue()
