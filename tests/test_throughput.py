"benchmarks/throughput.py: the CPU peak from cpuinfo, the summary of raw timings and the README table (no timing here)."
import sys
from pathlib import Path
import pytest
sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'benchmarks'))
from throughput import cpu_peak, summarise, markdown_table, summary_table

CPUINFO = 'model name\t: Test CPU\ncpu MHz\t\t: 2100.000\nflags\t\t: fpu avx avx2 fma avx512f\n'

def test_cpu_peak():
    p = cpu_peak(CPUINFO, cores=2)
    assert p['gflops'] == pytest.approx(2 * 2.1 * 16 * 2 * 2) and p['fp32_lanes'] == 16 and 'assumed' in p['how']
    assert cpu_peak(CPUINFO.replace(' avx512f', ''), cores=1)['gflops'] == pytest.approx(2.1 * 8 * 2 * 2)

def test_summary_and_table():
    r = summarise(dict(model='cnn8-7x7', backend='jax', batch=8, steps_s=[2., 4., 3.], pipeline_s=[0.5], predict_s=0.1,
                       first_step_s=9., status='done'))
    assert r['train_images_per_s'] == pytest.approx(8 / 3) and r['with_pipeline_images_per_s'] == pytest.approx(8 / 3.5)
    res = dict(peak=cpu_peak(CPUINFO, cores=2), flops={'cnn8-7x7': dict(train_flops_per_image=5.2e9, flops_how='XLA')},
               runs=[dict(r, gflops_per_s=13.9, peak_fraction=0.052), dict(model='cnn8-7x7', backend='tensorflow', batch=64,
                                                                          status='capped at 600 s')], skipped=['torch: not installed'])
    t = markdown_table(dict(results=res, started='2026-11-26T00:00:00'), placeholder=True)
    assert t.startswith('**Placeholder') and '| cnn8-7x7 | 5.20 | jax | 8 | 2.7 | 9.0 | 500 | 3000 | 2.3 | 14 (5%) | done |' in t
    assert '| cnn8-7x7 | 5.20 | tensorflow | 64 | - |' in t and 'torch: not installed' in t

def test_summary_table():
    "One row per model: each backend's best images/s with its batch (* when capped), the fastest setting, its share of peak."
    run = lambda be, b, step, status='done': summarise(dict(model='m', backend=be, batch=b, steps_s=[step], pipeline_s=[0.01],
                                                           status=status))
    runs = [run('tensorflow', 32, 1.), run('tensorflow', 64, 1.), run('jax', 32, 4., 'capped at 75 s'),
            dict(model='m', backend='jax', batch=64, status='capped at 75 s')]
    for r in runs:
        if r.get('train_images_per_s'): r.update(gflops_per_s=r['train_images_per_s'], peak_fraction=r['train_images_per_s'] / 200)
    res = dict(peak=cpu_peak(CPUINFO, cores=2), flops={'m': dict(train_flops_per_image=1e9)}, runs=runs, skipped=[])
    t = summary_table(dict(results=res, started='2026-11-27T00:00:00')).splitlines()
    assert t[0].startswith('| model | GFLOP / training image | tensorflow images/s (batch) | jax images/s (batch) | fastest')
    assert t[2] == '| m | 1.00 | 64.0 (64) | 8.0 (32)* | tensorflow, batch 64 | 64 (32%) | 1000 / 10 |', t[2]
    assert '\\* capped' in t[4] and t[-1].startswith('Peak: 269 GFLOP/s')

def test_readme_table_is_current():
    "README.md's CPU speed table is `--table R --summary` of the record it names (regenerate: paste it into nbs/index.ipynb)."
    import json, re
    root = Path(__file__).resolve().parents[1]
    readme = (root/'README.md').read_text(encoding='utf-8')
    m = re.search(r'record `(results/full/kit/benchmark-throughput__[^`]+\.json)`', readme)
    assert m, 'README.md names no benchmark-throughput record'
    rec = json.loads((root/m.group(1)).read_text(encoding='utf-8'))
    assert summary_table(rec) in readme, f'the README CPU table is not summary_table({m.group(1)}): ' \
        f'python benchmarks/throughput.py --table {m.group(1)} --summary, paste into nbs/index.ipynb, fermusic nb readme'
