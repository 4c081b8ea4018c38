"""End-to-end speed of the shipped classifier on instrument-like input, against float32 library search in the same run.

Writes results/speed_end_to_end.csv (one row per measurement, each with hardware, commit, seed and the machine's load):
- `grid`: raw spectra on a 1, 2, 4 or 8 cm-1 axis (450-4000 cm-1), absorbance and %T, units guessed per spectrum;
  the shipped classifier end to end (`Classifier.predict`: checks, units, preprocessing, network, library search stacked
  into the answer where the checkpoint stacks it (chapter 5b), open-set rule with its evidence columns, result table), the
  network alone without rule or stacking (`cnn_no_evidence_per_s`, `x_search_no_evidence`, `evidence_us` = the cost of the
  library match, stacking and rule per spectrum) and
  library search end to end (`Pipeline(OPEN_SPECY)` then `library_search` over the whole corpus, float32 products),
  timed alternately on the same queries. Library search gets its best: each time, the faster of BLAS on all threads and
  BLAS on one (on a loaded machine a multi-threaded BLAS can lose), and the fastest of the repeats; the CNN its median.
- `engine`: the network's two engines (numpy, torch kernels) on the 1 cm-1 %T queries, alternately.
- `stream`: a 1,000,000-spectrum ENVI map (BIP, float32, absorbance) written to /tmp, streamed from disk in a fresh
  process by `predict_iter` 8,192 spectra at a time (engine 'auto': numpy, as torch is not imported there), its peak
  resident memory (VmHWM); the map is deleted afterwards.
- `cold_start`: `mp-cnn classify` on one file as a whole process (farm-bench, median of 5), and the base commit's in turn.

    python scripts/bench_classify.py [--n 10000] [--map-n 1000000] [--reps 1] [--skip PART...]   (rows of skipped parts are kept)
"""
import argparse, os, re, subprocess, sys, tempfile, time, platform
from pathlib import Path
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE = '4fd7797'   # the commit before this work: the cold-start yardstick

def hardware():
    "CPU model, processors available, library versions."
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.machine())
    n = len(os.sched_getaffinity(0))
    import numpy, torch
    return f"{cpu}, {n} cores, numpy {numpy.__version__}, torch {torch.__version__}"

def commit():
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()

def load(): return '{:.1f}/{:.1f}/{:.1f}'.format(*os.getloadavg())

def queries(corpus, n, step, units, seed):
    "`n` corpus spectra as an instrument writes them: 450-4000 cm-1 every `step` cm-1 (the corpus range extended flat), scaled, noisy, in `units`."
    rng = np.random.default_rng(seed)
    wn = np.arange(450., 4000. + step / 2, step)
    X = corpus.X[rng.integers(0, len(corpus), n)].astype(np.float64)
    A = np.empty((n, len(wn)))
    for i, x in enumerate(X):
        f = np.isfinite(x); A[i] = np.interp(wn, corpus.wavenumbers[f], x[f])
    A = A * rng.uniform(0.5, 2, (n, 1)) + rng.normal(0, 1e-3, A.shape)
    A = A - np.minimum(A.min(1, keepdims=True), 0) + 0.01          # a positive absorbance, as measured
    return wn, (100 * 10 ** -A if units == '%T' else A).astype(np.float32)

def timed(f):
    t = time.perf_counter(); r = f(); return time.perf_counter() - t, r

# ---- the stream, run in a fresh process: `python bench_classify.py --stream HDR ENGINE`
def stream(hdr, engine, chunk=8192):
    from mp_cnn.formats import _envi_header
    from mp_cnn.classify import Classifier
    h = _envi_header(hdr)
    ns, nl, nb = (int(h[k]) for k in ('samples', 'lines', 'bands'))
    assert h['interleave'].lower() == 'bip' and int(h['data type']) == 4
    wn = np.array(h['wavelength'].strip('{}').split(','), float)
    units = 'A' if 'absorb' in h.get('z plot titles', '').lower() else None
    n, dat = ns * nl, Path(hdr).with_suffix('.dat')
    clf = Classifier.load(); clf.engine = engine
    def chunks():   # np.fromfile per chunk: a memmap's touched pages would count in the resident set until evicted
        with open(dat, 'rb') as f:
            for a in range(0, n, chunk):
                m = min(chunk, n - a)
                yield wn, np.fromfile(f, np.float32, m * nb).reshape(m, nb)
    t0, counts = time.perf_counter(), {}
    for r in clf.predict_iter(chunks(), units=units):
        for k, v in r['label'].fillna('unknown').value_counts().items(): counts[k] = counts.get(k, 0) + int(v)
    dt = time.perf_counter() - t0
    hwm = int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) / 1024
    print(f"STREAM n={n} s={dt:.2f} rss={hwm:.1f} torch={'torch' in sys.modules} labelled={n - counts.get('unknown', 0)}")

def write_map(path, corpus, n, seed, chunk=8192):
    "A `n`-pixel ENVI map (1000 columns, BIP float32 absorbance) of corpus spectra on an FPA-like 900-3800 cm-1 axis (3.86 cm-1)."
    rng = np.random.default_rng(seed)
    wn = np.arange(900., 3800., 3.857)
    from mp_cnn.spectra import resample_array
    bank = resample_array(corpus.wavenumbers, corpus.X[rng.integers(0, len(corpus), 4000)], wn)
    bank = np.where(np.isnan(bank), np.nanmedian(bank, 1, keepdims=True), bank).astype(np.float32)   # a map has no gaps
    with open(path.with_suffix('.dat'), 'wb') as f:
        for a in range(0, n, chunk):
            m = min(chunk, n - a)
            X = bank[rng.integers(0, len(bank), m)] * rng.uniform(0.3, 1.5, (m, 1)).astype(np.float32)
            f.write((X + rng.normal(0, 2e-3, X.shape).astype(np.float32)).tobytes())
    path.with_suffix('.hdr').write_text(
        f"ENVI\nsamples = 1000\nlines = {n // 1000}\nbands = {len(wn)}\nheader offset = 0\ndata type = 4\ninterleave = bip\n"
        f"byte order = 0\nz plot titles = {{Wavenumber (cm-1), Absorbance}}\nwavelength = {{{', '.join(f'{w:.3f}' for w in wn)}}}\n")
    return path.with_suffix('.hdr')

def farm(cmd, vs, cwd, runs=5):
    "farm-bench's median wall and cpu seconds of `cmd` and of `vs`, run in turn (in `cwd`: `python -m` puts it first on sys.path)."
    r = subprocess.run(['farm-bench', '-n', str(runs), '--timeout', '600', '--vs', vs, '--'] + cmd, capture_output=True, text=True, cwd=cwd)
    walls = [l.split() for l in r.stdout.splitlines() if re.match(r'\s*[AB] wall s', l)]
    cpus = [l.split() for l in r.stdout.splitlines() if re.match(r'\s*[AB] cpu s', l)]
    if len(walls) < 2: raise RuntimeError(f"farm-bench said:\n{r.stdout}\n{r.stderr}")
    return float(walls[0][4]), float(walls[1][4]), float(cpus[0][4]), float(cpus[1][4]), r.stdout

def read_results(path):
    "`results/speed_end_to_end.csv` with its commits as text (a hash such as 20e9161 would parse as a float)."
    return pd.read_csv(path, dtype={'commit': str})

def readme_text(df):
    "The README's paragraph on end-to-end speed, from `results/speed_end_to_end.csv` (`tests/test_fast.py` checks that the README holds it)."
    g, st, cs = df[df.part == 'grid'], df[df.part == 'stream'], df[df.part == 'cold_start'].iloc[0]
    one, s = g[(g.step_cm1 == 1) & (g.units == '%T')].iloc[0], st.iloc[-1]
    ev = 'evidence' in g and g['evidence'].fillna(False).astype(bool).all()
    return (f"End to end on raw instrument-like spectra (`scripts/bench_classify.py`, `results/speed_end_to_end.csv`; "
            f"{g.hardware.iloc[0]}, load average {one.load}; code at {g.commit.iloc[0]}, seed {g.seed.iloc[0]}): "
            f"the shipped classifier, checks, units, preprocessing, {'the library match, the answer stacked with library search, the open-set rule with its evidence (best reference and r) ' if ev else ''}"
            f"and result table included, runs at {g.x_search.min():.1f}x to "
            f"{g.x_search.max():.1f}x float32 library search over the whole corpus ({int(g.n_library.iloc[0]):,} references, its "
            f"preprocessing included) on 1, 2, 4 and 8 cm-1 input in absorbance and %T (target: 5x on every grid)"
            + (f"; the network alone (no match, stacking or evidence) {g.x_search_no_evidence.min():.1f}x to {g.x_search_no_evidence.max():.1f}x, so those cost "
               f"{g.evidence_us.min():.0f}-{g.evidence_us.max():.0f} µs per spectrum" if ev else '') +
            f"; at 1 cm-1 %T, {int(one.cnn_per_s):,} spectra/s against {int(one.search_per_s):,} (target: 30,000). A {int(s.n):,}-spectrum ENVI map "
            f"streams from disk at {int(s.cnn_per_s):,} spectra/s with a peak RSS of {s.peak_rss_mb:.0f} MB (code at {s.commit}); "
            f"`mp-cnn classify` on one file takes {cs.wall_s:.2f} s as a whole process (median of 5, {cs.cpu_s:.2f} s of CPU; "
            f"the base commit {BASE}: {cs.base_wall_s:.2f} s, {cs.base_cpu_s:.2f} s of CPU; target: 1.5 s). Chapter 6b has the table.")

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=10_000); p.add_argument('--reps', type=int, default=3)
    p.add_argument('--map-n', type=int, default=1_000_000); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=str(ROOT/'results'/'speed_end_to_end.csv'))
    p.add_argument('--skip', nargs='*', default=[], help='parts to skip: grid engine stream cold_start')
    p.add_argument('--stream-engines', nargs='*', default=['auto'], help="the map's engines: auto (what `predict` does), numpy, torch")
    p.add_argument('--stream', nargs=2, metavar=('HDR', 'ENGINE'), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.stream: return stream(*a.stream)
    from mp_cnn.corpus import load_corpus
    from mp_cnn.preprocess import Pipeline, OPEN_SPECY_STEPS
    from mp_cnn.search import library_search
    from mp_cnn.classify import Classifier
    from threadpoolctl import threadpool_limits
    corpus = load_corpus()
    lib_pipe = Pipeline(OPEN_SPECY_STEPS, check=False)
    L, labels = lib_pipe(corpus).X, corpus.labels.astype(str).to_numpy()   # the library is prepared once, as in practice
    clf = Classifier.load()
    rule, stack = clf.rule, clf.stack   # the shipped rule and stacking: the library match, the stacked answer and the evidence are timed with the CNN
    base = dict(hardware=hardware(), commit=commit(), seed=a.seed, n_library=len(L))
    old = read_results(a.out) if Path(a.out).exists() else pd.DataFrame({'part': []})
    rows = old[old.part.isin(a.skip)].to_dict('records')   # the rows of the parts skipped this time are kept
    Path(a.out).parent.mkdir(exist_ok=True, parents=True)
    def add(**kw):   # the CSV is rewritten after every row: an interrupted run keeps what it measured
        rows.append({**kw, **base}); print({k: v for k, v in rows[-1].items() if k not in base}, flush=True)
        pd.DataFrame(rows).to_csv(a.out, index=False)
    def search(wn, X): return library_search(lib_pipe.apply(wn, X)[1], L, labels)
    wn, X = queries(corpus, 1000, 4., 'A', a.seed)
    clf.predict((wn, X)); search(wn, X)   # warm-up: imports, caches
    if 'grid' not in a.skip:
        for step in (1., 2., 4., 8.):
            for units in ('A', '%T'):
                wn, X = queries(corpus, a.n, step, units, a.seed)
                cnn, bare, ls, l0 = [], [], [], load()
                for _ in range(a.reps):   # alternately: a drift in the machine's speed hits all three
                    cnn.append(timed(lambda: clf.predict((wn, X)))[0])
                    if rule is not None:  # the network alone: no library match, no stacking, no evidence columns
                        clf.rule = clf.stack = None; bare.append(timed(lambda: clf.predict((wn, X)))[0]); clf.rule, clf.stack = rule, stack
                    t_all = timed(lambda: search(wn, X))[0]
                    with threadpool_limits(1, 'blas'): t_one = timed(lambda: search(wn, X))[0]
                    ls.append(min(t_all, t_one))
                c, s = np.median(cnn), min(ls)
                b = np.median(bare) if bare else np.nan
                add(part='grid', step_cm1=step, units=units, points=len(wn), n=a.n, engine=clf._engine(),
                    cnn_per_s=round(a.n / c), search_per_s=round(a.n / s), x_search=round(float(s / c), 2),
                    evidence=rule is not None, cnn_no_evidence_per_s=round(a.n / b) if bare else np.nan,
                    x_search_no_evidence=round(float(s / b), 2) if bare else np.nan,
                    evidence_us=round(1e6 * (c - b) / a.n, 1) if bare else np.nan, load=f'{l0} -> {load()}')
    if 'engine' not in a.skip:
        wn, X = queries(corpus, a.n, 1., '%T', a.seed)
        t, l0 = {'numpy': [], 'torch': []}, load()
        for _ in range(a.reps):
            for e in t:
                clf.engine = e; t[e].append(timed(lambda: clf.predict((wn, X)))[0])
        clf.engine = 'auto'
        for e in t: add(part='engine', step_cm1=1., units='%T', points=len(wn), n=a.n, engine=e, cnn_per_s=round(a.n / np.median(t[e])),
                        load=f'{l0} -> {load()}')
    if 'stream' not in a.skip:
        d = Path(tempfile.mkdtemp(prefix='mp_cnn_map_', dir='/tmp'))
        try:
            hdr = write_map(d/'map', corpus, a.map_n, a.seed)
            gb = (d/'map.dat').stat().st_size / 1e9
            for engine in a.stream_engines:
                l0 = load()
                r = subprocess.run([sys.executable, __file__, '--stream', str(hdr), engine], capture_output=True, text=True)
                m = re.search(r'STREAM n=(\d+) s=([\d.]+) rss=([\d.]+) torch=(\w+) labelled=(\d+)', r.stdout)
                if not m: raise RuntimeError(r.stdout + r.stderr)
                n, s, rss = int(m[1]), float(m[2]), float(m[3])
                add(part='stream', step_cm1=3.857, units='A', points=int(re.search(r'bands = (\d+)', hdr.read_text())[1]), n=n,
                    engine=engine + (' (torch imported)' if m[4] == 'True' else ''), cnn_per_s=round(n / s), peak_rss_mb=round(rss),
                    map_gb=round(gb, 2), labelled=int(m[5]), load=f'{l0} -> {load()}')
        finally:
            for f in d.iterdir(): f.unlink()
            d.rmdir()
    if 'cold_start' not in a.skip:
        f = Path(os.environ.get('MP_CNN_DATA', ROOT.parent/'shared'/'data'))/'openspecy'/'inst'/'extdata'/'ftir_ps.0'
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp)/'base').mkdir(); (Path(tmp)/'run').mkdir()   # the base commit's package; an empty working folder
            subprocess.run(f'git -C {ROOT} archive {BASE} mp_cnn | tar -x -C {tmp}/base', shell=True, check=True)
            cmd = lambda root: ['env', f'PYTHONPATH={root}', sys.executable, '-m', 'mp_cnn.cli', 'classify', str(f), '-o', f'{tmp}/one.csv']
            l0 = load()
            new, old, new_cpu, old_cpu, out = farm(cmd(ROOT), ' '.join(cmd(f'{tmp}/base')), f'{tmp}/run')
        add(part='cold_start', n=1, engine='numpy', wall_s=new, cpu_s=new_cpu, base_wall_s=old, base_cpu_s=old_cpu, load=f'{l0} -> {load()}')
    print(f"wrote {a.out}")

if __name__ == '__main__': sys.exit(main())
