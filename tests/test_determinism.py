"""The determinism contract (README, lesson 01_config): the same code, seed, backend and thread count give
identical weights, in separate processes and across a resume; records say how many threads ran.

A different thread count is allowed to give different numbers (sums are added in another order), so nothing
here asserts that two thread counts agree or disagree."""
import json, os, subprocess, sys

TRAIN = r'''
import json, sys, tempfile, numpy as np
from pathlib import Path
from fermusic.data import load_fer2013
from fermusic.train import tiny_cnn, fit, fingerprint, augmentation, Checkpoint, run_spec
from fermusic.records import hardware
from fermusic.config import set_seed
f = load_fer2013(split='train', add_channel=True)           # the shipped FER2013 sample
x, y = f.x[::3], f.y[::3]
set_seed(0); m, aug = tiny_cnn(), augmentation(rotation=10, flip=True, seed=0)   # seed before building
state = sys.argv[1] if len(sys.argv) > 1 else None
ck = Checkpoint(state, run_spec(m, dict(lr=1e-3), dict(train=fingerprint(x, y)), aug), epochs=2) if state else None
fit(m, x, y, epochs=1 if state and not Path(state).exists() else 2, batch_size=32, augment=aug, seed=0, checkpoint=ck)
print(json.dumps(dict(weights=fingerprint(*m.get_weights()), threads=hardware()['threads'])))
'''


def _train(threads, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith('FERMUSIC_')}
    env.update(KERAS_BACKEND='tensorflow', TF_CPP_MIN_LOG_LEVEL='3', TF_NUM_INTRAOP_THREADS=str(threads),
               TF_NUM_INTEROP_THREADS='1')
    res = subprocess.run([sys.executable, '-c', TRAIN, *map(str, args)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_same_seed_and_threads_give_identical_weights_across_processes_and_resumes(tmp_path):
    # three processes, not four: `resumed` trained epoch 2 in a new process from `first`'s epoch 1, so it
    # equals `a` only if separate processes give identical weights and the resume adds nothing
    a = _train(1)
    assert a['threads'] == 1, 'the record does not say that one thread ran'
    first = _train(1, tmp_path/'run')           # one epoch of two, then the process ends
    resumed = _train(1, tmp_path/'run')         # a new process continues from the checkpoint
    assert first['weights'] != a['weights']
    assert resumed['weights'] == a['weights'], \
        'three processes with the same seed and one thread (one of them resuming) ended with other weights'
