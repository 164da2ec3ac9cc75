"A full run's job started again skips the seeds it finished and recorded (fermusic.runs, lesson 07)."
import json, os, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_job_skips_recorded_seeds(tmp_path):
    "The compact job over checkpoints that the committed CPU records name: every seed skipped, no "
    "data read (the data folder is empty); one unfinished seed would train, and fails on that folder."
    from fermusic.records import load_records
    from fermusic.runs import run_command
    recs = [r for r in load_records(ROOT/'results', name='compact', paper='kit', profile='full')
            if (r.get('schedule') or {}).get('run_key')]   # checkpointed runs (CPU), one per seed
    by_seed = {r['seed']: r for r in sorted(recs, key=lambda r: r['started'])}
    assert sorted(by_seed) == [0, 1, 2], sorted(by_seed)
    state = tmp_path/'state'
    for s, r in by_seed.items():
        d = state/'kit'/'compact'/f'seed{s}'; d.mkdir(parents=True)
        (d/'progress.json').write_text(json.dumps(dict(key=r['schedule']['run_key'], finished=True)))
    (tmp_path/'data').mkdir()
    env, argv = run_command('compact', data=tmp_path/'data')
    env = dict(os.environ, **env, FERMUSIC_STATE=str(state), PYTHONPATH=str(ROOT))
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines() == [f'compact, seed {s}: finished and recorded; skipped' for s in (0, 1, 2)]
    (state/'kit'/'compact'/'seed2'/'progress.json').write_text(json.dumps(dict(key='x', finished=False)))
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode != 0 and 'compact, seed 1: finished and recorded; skipped' in r.stdout, r.stdout
    assert 'seed 2: finished' not in r.stdout
