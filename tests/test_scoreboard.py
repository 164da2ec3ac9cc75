"""`fermusic.scoreboard` and `fermusic reproduce`: the README's table is current, the claims are well formed, and
`reproduce` passes, fails and reports as documented (nbs/90_scoreboard.ipynb covers the normal paths)."""
import contextlib, io, json, re
from pathlib import Path
import nbformat
import fermusic.scoreboard as SB
from fermusic.scoreboard import (PAPERS, collect_claims, scoreboard, scoreboard_markdown, scoreboard_json, reproduce, VERDICTS, FAILED_SHARE)
from fermusic.records import Claim, EVIDENCE, write_json_atomic
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


def test_readme_runs_are_current():
    "README.md's table of trained runs is what `run_table_markdown` gives now (regenerate as the scoreboard)."
    readme = (ROOT/'README.md').read_text(encoding='utf-8')
    m = re.search(r'<!-- runs:.*?<!-- /runs -->', readme, re.S)
    assert m, 'README.md has no runs block'
    assert m.group(0) == SB.run_table_markdown(), \
        'the README runs table is stale: fermusic nb run nbs/index.ipynb && fermusic nb readme'


def test_readme_coverage_is_current():
    "The README states how many result numbers the papers print and how many have rows, as `coverage_text` gives it now."
    assert SB.coverage_text() in (ROOT/'README.md').read_text(encoding='utf-8'), \
        'the README coverage line is stale: fermusic nb run nbs/index.ipynb && fermusic nb readme'


def test_quick_learning_check(tmp_path):
    "A quick LEARNS check passes a model above the majority floor and fails one at chance, with the Wilson floor stated."
    from fermusic.records import recording
    ev = dict(n=210, labels=list('abcdefg'), per_class={l: dict(support=30) for l in 'abcdefg'})
    for name, acc in (('learnt', 0.2), ('chance', 1 / 7), ('one', 0.19)):
        with recording(name, 'kit', seed=0, profile='quick', root=tmp_path) as r: r.evaluations = dict(test=dict(ev, accuracy=acc))
    qc = SB.quick_check([Claim('kit', n, 0.6, n, 'evaluations.test.accuracy', quick=SB.LEARNS) for n in ('learnt', 'chance', 'one')],
                        root=tmp_path)
    assert qc.status.tolist() == ['ok', 'NOT LEARNING', 'NOT LEARNING'] and abs(qc.expected[0] - 0.1966) < 1e-3


def test_claims_are_well_formed():
    claims, missing = collect_claims()
    assert {c.paper for c in claims} >= {'yu2020', 'shinde'}
    for c in claims:
        assert c.paper in PAPERS, c
        assert c.tolerance is None or (c.tolerance >= 0 and c.reason), f'{c.claim}: a stated tolerance needs its reason'
        assert c.evidence in EVIDENCE, c
        assert c.record is not None or c.reason, f'{c.claim}: a claim without a record must say why'
        assert isinstance(c.metric, str) or callable(c.metric), c
        assert c.quick is None or (len(c.quick) == 2 and c.quick[1] >= 0), c
        assert not (c.quick and c.quick[0] == SB.LEARNS[0]) or (isinstance(c.metric, str) and c.metric.endswith('.accuracy')), c
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
    # a drifted value fails, and so does a claim whose run wrote no record this time (one run of the lesson for both)
    res = reproduce('yu2020', out=tmp_path/'drift', claims=[Claim('yu2020', 'tiny', 0.5, 'tiny', quick=(0.6, 0.05)),
                                                            Claim('yu2020', 'other', 0.5, 'other', quick=(0.5, 0.01))],
                    echo=lines.append, **kw)
    assert res['status'] == 1 and res['quick'].status.tolist() == ['DRIFT', 'no quick record']
    assert 'DRIFT' in (tmp_path/'drift'/'report.md').read_text()


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


def _rec(root, name, seed=0, started='2026-01-01T00:00:00+00:00', **kw):
    "Write a synthetic full-profile record of the paper 'yu2020' under `root`."
    rec = {**dict(name=name, paper='yu2020', profile='full', seed=seed, started=started, params={}, history={}, notes=[],
                  hardware=dict(cpu_count=2, accelerators=[])), **kw}
    write_json_atomic(Path(root)/'full'/'yu2020'/f"{name}__seed{seed}__{started[:10].replace('-', '')}.json", rec)

def _ev(correct, n=1000, confusion=None):
    "An evaluation of `n` faces, `correct` of them right, two classes of 500."
    cm = confusion or [[correct // 2, 500 - correct // 2], [500 - (correct - correct // 2), correct - correct // 2]]
    return dict(test=dict(n=n, accuracy=correct / n, labels=['a', 'b'], confusion=cm,
                          per_class=dict(a=dict(support=500, recall=cm[0][0] / 500), b=dict(support=500, recall=cm[1][1] / 500))))

def test_every_verdict_from_synthetic_records(tmp_path):
    "Synthetic records that produce each verdict, with the schedule and tolerance the rows state, and the JSON."
    converged = dict(params=dict(epochs=30, patience=5), epochs_run=12, history=dict(loss=[1.] * 12, val_accuracy=[.5] * 3 + [.6] + [.55] * 8))
    _rec(tmp_path, 'good', evaluations=_ev(610), **converged)
    _rec(tmp_path, 'bad', evaluations=_ev(500), **converged)
    _rec(tmp_path, 'short', evaluations=_ev(610), params=dict(epochs=12), epochs_run=10, history=dict(loss=[1.] * 10),
         notes=['stopped by the 88 min time budget after 10 of 12 epochs'])
    _rec(tmp_path, 'new', evaluations=_ev(610), schedule=dict(epochs_planned=500, epochs_run=40, best_epoch=40, monitor='val_accuracy',
                                                              stopped='epoch_cap', still_improving=True))
    _rec(tmp_path, 'flat', evaluations=_ev(500, confusion=[[500, 0], [480, 20]]), **converged)
    _rec(tmp_path, 'count', metrics=dict(n=28709))
    for s, k in enumerate((590, 610, 630)): _rec(tmp_path, 'seeds', seed=s, evaluations=_ev(k), **converged)
    acc = 'evaluations.test.accuracy'
    claims = [Claim('yu2020', 'good', 0.6, 'good', acc), Claim('yu2020', 'bad', 0.6, 'bad', acc),
              Claim('yu2020', 'short', 0.6, 'short', acc), Claim('yu2020', 'new', 0.6, 'new', acc),
              Claim('yu2020', 'flat', 0.6, 'flat', acc), Claim('yu2020', 'sub', 0.6, 'good', acc, evidence='substitute'),
              Claim('yu2020', 'count', 28708, 'count', 'metrics.n', 0, evidence='derived', reason='a data count'),
              Claim('yu2020', 'typo', 0.177, 'good', acc, 0.0015, evidence='inconsistent', reason='the paper contradicts itself'),
              Claim('yu2020', 'none', 0.5, None, reason='no weights'), Claim('yu2020', 'nonum', None, 'good', acc),
              Claim('yu2020', 'gone', 0.6, 'never-run', acc), Claim('yu2020', 'seeds', 0.6, 'seeds', acc),
              Claim('yu2020', 'class a', 0.55, 'good', 'evaluations.test.per_class.a.recall'),
              Claim('yu2020', 'arith', 10, None, lambda _: 7, 0, evidence='inconsistent', reason='its own parts'),
              Claim('yu2020', 'sub loss', 0.65, 'good', 'history.loss.-1', evidence='substitute')]
    b = scoreboard(claims=claims, root=tmp_path).set_index('claim')
    want = dict(good='reproduced', bad='not reproduced', short='under-trained', new='under-trained', flat='failed run',
                sub='substitute', count='derived check', typo='paper inconsistent', none='not measurable here',
                nonum='no number in the paper', gone='not run yet', seeds='reproduced', arith='paper inconsistent')
    assert b.verdict.to_dict() | want == b.verdict.to_dict(), b.verdict.to_dict()
    assert set(VERDICTS) - set(b.verdict) == {'lesson not merged yet'}   # every verdict but the checkout's own, made here
    assert b.schedule['short']['stopped'] == 'time_budget' and b.schedule['short']['epochs_run'] == 10
    assert b.schedule['new']['epochs_planned'] == 500 and b.schedule['good']['stopped'] == 'converged'
    assert b.schedule['count'] is None
    assert (b.ours['arith'], b.run['arith']) == (7, '')           # arithmetic on the paper's numbers: no record needed
    assert b.tol['sub loss'] is None and 'never judged' in b.reason['sub loss']
    # one tolerance rule: the 95% Wilson interval of the test set's size (1000 faces), of a class's count (500),
    # widened by the spread of 3 seeds
    assert abs(b.tol['good'] - 0.0303) < 5e-4 and abs(b.tol['class a'] - 0.0436) < 5e-4, b.tol
    assert b.tol['seeds'] > b.tol['good'] and 'spread of 3 seeds' in b.reason['seeds']
    assert '1,000 test faces' in b.reason['good'] and 'the 500 test a faces' in b.reason['class a']
    assert b.reason['flat'].startswith('predicts a for 98% of the test faces') and 0.98 >= FAILED_SHARE
    rows = json.loads(scoreboard_json(b.reset_index()))
    assert len(rows) == len(claims) and {'paper', 'claim', 'paper_value', 'ours', 'tol', 'verdict', 'schedule', 'record'} <= set(rows[0])
    assert rows[2]['schedule']['epochs_planned'] == 12 and rows[8]['ours'] is None


def test_cli_scoreboard_json():
    out = io.StringIO()
    with contextlib.redirect_stdout(out): assert main(['scoreboard', '--json']) == 0
    rows = json.loads(out.getvalue())
    assert len(rows) == len(scoreboard()) and all(r['verdict'] in VERDICTS for r in rows)


def test_reason_facts_come_from_the_record(tmp_path):
    "A reason's epochs, budget and data size are read from the record at judge time: the reason follows the record."
    why = 'CPU schedule: {epochs}, in a {params.time_budget_min} min budget, on {dataset.train:,} faces ({seeds})'
    acc = 'evaluations.test.accuracy'
    for run, planned, budget in ((10, 12, 88), (7, 30, 45)):
        _rec(tmp_path/str(run), 'cnn', evaluations=_ev(610), params=dict(epochs=planned, time_budget_min=budget),
             epochs_run=run, history=dict(loss=[1.] * run), dataset=dict(train=28709),
             notes=[f'stopped by the {budget} min time budget after {run} of {planned} epochs'])
        row = scoreboard(claims=[Claim('yu2020', 'acc', 0.6, 'cnn', acc, reason=why)], root=tmp_path/str(run)).iloc[0]
        assert row.reason.endswith(f'CPU schedule: {run}/{planned} epochs, time budget, in a {budget} min budget, '
                                   'on 28,709 faces (1 seed)'), row.reason
        assert row.verdict == 'under-trained' and row.schedule['epochs_run'] == run
    row = scoreboard(claims=[Claim('yu2020', 'acc', 0.6, 'gone', acc, reason=why)], root=tmp_path/'10').iloc[0]
    assert row.reason == 'CPU schedule: ?, in a ? min budget, on ? faces (?)' and row.verdict == 'not run yet'


def test_seeds_are_averaged(tmp_path):
    "Several seeds: ours is the mean of each seed's newest record, shown with its sd and the number of seeds."
    converged = dict(params=dict(epochs=30, patience=5), epochs_run=12,
                     history=dict(loss=[1.] * 12, val_accuracy=[.5] * 3 + [.6] + [.55] * 8))
    _rec(tmp_path, 'cnn', seed=0, started='2026-01-01T00:00:00+00:00', evaluations=_ev(400), **converged)  # seed 0, older
    for s, k in enumerate((590, 610, 630)): _rec(tmp_path, 'cnn', seed=s, started='2026-02-01T00:00:00+00:00',
                                                 evaluations=_ev(k), **converged)
    claim = Claim('yu2020', 'acc', 0.6, 'cnn', 'evaluations.test.accuracy', reason='{seeds}')
    b = scoreboard(claims=[claim], root=tmp_path)
    r = b.iloc[0]
    assert r.seeds == 3 and abs(r.ours - 0.61) < 1e-12 and abs(r.sd - 0.02) < 1e-12 and r.reason.endswith('3 seeds')
    assert SB.board_text(b).ours[0] == '0.610 ± 0.020 (3 seeds)'
    assert json.loads(scoreboard_json(b))[0]['seeds'] == 3
