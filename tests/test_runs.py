"A full run's job started again skips the seeds it finished and recorded (fermusic.runs, lesson 07)."
import json, os, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_job_skips_recorded_seeds(tmp_path, monkeypatch):
    "The compact job over finished checkpoints that the committed CPU records name, those records "
    "carrying today's settings: every seed skipped, no data read (the data folder is empty). A seed "
    "unfinished, or recorded with other settings, would train: it fails on that folder."
    from fermusic.records import load_records
    from fermusic.runs import run_command, run_overrides
    from fermusic.compact import compact_settings
    from fermusic.train import public_settings
    recs = [r for r in load_records(ROOT/'results', name='compact', paper='kit', profile='full')
            if (r.get('schedule') or {}).get('run_key')]   # checkpointed runs (CPU), one per seed
    by_seed = {r['seed']: r for r in sorted(recs, key=lambda r: r['started'])}
    assert sorted(by_seed) == [0, 1, 2], sorted(by_seed)
    monkeypatch.setenv('FERMUSIC_OVERRIDES', json.dumps(run_overrides('compact')))
    now = json.loads(json.dumps(public_settings(compact_settings('full'))))
    state, res = tmp_path/'state', tmp_path/'results'
    for s, r in by_seed.items():
        d = state/'kit'/'compact'/f'seed{s}'; d.mkdir(parents=True)
        (d/'progress.json').write_text(json.dumps(dict(key=r['schedule']['run_key'], finished=True)))
        out = res/'full'/'kit'/Path(r['path']).name; out.parent.mkdir(parents=True, exist_ok=True)
        # seed 2's record carries another learning rate: settings since changed, so it trains
        out.write_text(json.dumps(dict(r, params=now if s < 2 else dict(now, lr=now['lr'] * 10))))
    (tmp_path/'data').mkdir()
    env, argv = run_command('compact', data=tmp_path/'data')
    env = dict(os.environ, **env, FERMUSIC_STATE=str(state), FERMUSIC_RESULTS=str(res), PYTHONPATH=str(ROOT))
    def job():
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    # each skipped seed is said, naming the record it found
    skipped = [f"compact, seed {s}: finished and recorded ({res/'full'/'kit'/Path(by_seed[s]['path']).name}); skipped"
               for s in (0, 1, 2)]
    r = job()
    assert r.returncode != 0 and r.stdout.splitlines()[:3] == [*skipped[:2], 'compact seed 2: loading data'], (
        r.stdout + r.stderr[-1500:])
    (res/'full'/'kit'/Path(by_seed[2]['path']).name).write_text(json.dumps(dict(by_seed[2], params=now)))
    r = job()
    assert r.returncode == 0 and r.stdout.splitlines() == skipped, r.stdout + r.stderr[-2000:]
    (state/'kit'/'compact'/'seed2'/'progress.json').write_text(json.dumps(dict(key='x', finished=False)))
    r = job()
    assert r.returncode != 0 and r.stdout.splitlines()[:3] == [*skipped[:2], 'compact seed 2: loading data'], (
        r.stdout + r.stderr[-1500:])
