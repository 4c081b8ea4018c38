"""Execute notebooks in place at full scale and keep their outputs, the way a reader would run them.

Uses nbdev's own runner (so `#| eval: false` cells are skipped, exactly as in `nbdev-test`), but with IN_TEST unset
and no flags skipped: slow cells run too. Then run `nbdev-clean`.

    MP_CNN_DATA=../shared/data python scripts/run_notebooks.py nbs/00e_corpus.ipynb [...]
"""
import os, sys, time
import nbdev.test as T

T.in_notebook = lambda: True          # nbdev sets IN_TEST=1 outside a notebook; a full run must not
os.environ.pop('IN_TEST', None)
os.environ.setdefault('MPLBACKEND', 'Agg')
ok = True
for fn in sys.argv[1:]:
    t0 = time.time()
    fn = os.path.abspath(fn)
    res, _ = T.test_nb(fn, skip_flags=[], save=True, cell_timeout=None, cell_timing_min=30)
    print(f"{fn}: {'ok' if res else 'FAILED'} in {time.time() - t0:.0f} s", flush=True)
    ok &= res
sys.exit(0 if ok else 1)
