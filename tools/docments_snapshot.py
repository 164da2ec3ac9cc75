"""What a formatting pass must not change: docments() and the docstring of every public function,
class and method of fermusic.

    python tools/docments_snapshot.py save /tmp/before.json     # before `python tools/fmt_nbs.py`
    python tools/docments_snapshot.py compare /tmp/before.json  # after it (and nbdev_export)

`compare` lists each parameter whose docments text changed (and each docstring whose words changed;
a rewrapped docstring differs only in whitespace and is counted, not listed); exit 1 if any did.
It imports the fermusic found first on sys.path: run it with PYTHONPATH set to the checkout."""

import importlib, inspect, json, pkgutil, sys
from pathlib import Path


def snapshot() -> dict:
    "{qualified name: {docments, doc}} over fermusic's modules."
    import fermusic
    from fastcore.docments import docments

    out = {}
    for m in pkgutil.iter_modules(fermusic.__path__):
        if m.name.startswith('_'):
            continue
        mod = importlib.import_module(f'fermusic.{m.name}')
        objs = []
        for n, o in vars(mod).items():
            if getattr(o, '__module__', None) != mod.__name__:
                continue
            if inspect.isfunction(o) or inspect.isclass(o):
                objs.append((n, o))
            if inspect.isclass(o):
                objs += [(f'{n}.{k}', v) for k, v in vars(o).items() if inspect.isfunction(v)]
        for n, o in objs:
            try:
                d = {k: None if v is None else str(v) for k, v in docments(o).items()}
            except Exception as e:
                d = f'{type(e).__name__}: {e}'
            out[f'{mod.__name__}.{n}'] = dict(docments=d, doc=o.__doc__)
    return out


def compare(before: dict, after: dict) -> list[str]:
    "The differences that matter: docments texts, and docstring words."
    words = lambda s: None if s is None else ' '.join(s.split())
    res = [f'{k}: gone' for k in sorted(set(before) - set(after))]
    for k in sorted(set(before) & set(after)):
        a, b = before[k], after[k]
        if a['docments'] != b['docments']:
            da, db = a['docments'], b['docments']
            if not (isinstance(da, dict) and isinstance(db, dict)):
                res.append(f'{k}: {da!r} -> {db!r}')
                continue
            for p in sorted(set(da) | set(db)):
                if da.get(p) != db.get(p):
                    res.append(f'{k}({p}): {da.get(p)!r} -> {db.get(p)!r}')
        if words(a['doc']) != words(b['doc']):
            res.append(f'{k}.__doc__: {a["doc"]!r} -> {b["doc"]!r}')
    return res


def main(argv=None) -> int:
    args = argv or sys.argv[1:]
    if len(args) != 2 or args[0] not in ('save', 'compare'):
        sys.exit(__doc__)
    cmd, path = args
    now = snapshot()
    if cmd == 'save':
        Path(path).write_text(json.dumps(now, indent=1, sort_keys=True))
        print(f'{len(now)} objects saved to {path}')
        return 0
    before = json.loads(Path(path).read_text())
    diff = compare(before, now)
    ws = sum(before[k]['doc'] != now[k]['doc'] for k in set(before) & set(now))
    print(*diff, sep='\n')
    print(
        f'{len(now)} objects; {len(diff)} change(s) of docments or docstring words; '
        f'{ws} docstring(s) differ at all (the rest only in whitespace)'
    )
    return int(bool(diff))


if __name__ == '__main__':
    sys.exit(main())
