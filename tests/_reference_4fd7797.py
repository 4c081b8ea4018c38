"""Today's (base commit 4fd7797) inference path, kept verbatim as the reference the fast path is tested against:
float64 preprocessing (row-by-row units, `resample_array`, scipy's `savgol_filter`) and the unfolded torch model.
Copied from mp_cnn/data.py, preprocess.py and classify.py at 4fd7797; not part of the package."""
from __future__ import annotations
import json, inspect, warnings
import numpy as np
from scipy.signal import savgol_filter
from mp_cnn.spectra import Spectra
from mp_cnn.spectra import check_spectra
from mp_cnn.classify import as_spectra
from mp_cnn.spectra import input_flags

# --- mp_cnn/data.py at 4fd7797
def _interp_weights(x, xq):
    "Left index, weight and out-of-range mask for linear interpolation of `xq` on ascending `x`."
    i = np.clip(np.searchsorted(x, xq, side='right') - 1, 0, len(x) - 2)
    w = (xq - x[i]) / (x[i + 1] - x[i])
    out = (xq < x[0] - 1e-9) | (xq > x[-1] + 1e-9)
    return i, np.clip(w, 0, 1), out

def _interp_rows(x, Y, xq):
    "Linear interpolation of every row of `Y` (on `x`) at `xq`; NaN outside `x`."
    i, w, out = _interp_weights(x, xq)
    R = Y[:, i] * (1 - w) + Y[:, i + 1] * w
    R[:, out] = np.nan
    return R

def resample_array(wn, X, grid):
    "Resample rows of `X` from ascending axis `wn` onto ascending `grid`: bin averages when coarsening, else linear."
    wn, grid = np.asarray(wn, np.float64), np.asarray(grid, np.float64)
    X = np.atleast_2d(np.asarray(X, np.float64))
    if len(wn) < 2: raise ValueError("a spectrum needs at least two points to be resampled")
    src, dst = np.median(np.diff(wn)), (np.median(np.diff(grid)) if len(grid) > 1 else 0)
    if dst <= 1.5 * src: return _interp_rows(wn, X, grid).astype(np.float32)
    edges = np.concatenate([[grid[0] - dst / 2], (grid[1:] + grid[:-1]) / 2, [grid[-1] + dst / 2]])
    valid = ~np.isnan(X)
    Xf = np.where(valid, X, 0.)
    dx = np.diff(wn)
    C = np.concatenate([np.zeros((len(X), 1)), np.cumsum((Xf[:, 1:] + Xf[:, :-1]) / 2 * dx, axis=1)], axis=1)
    # a point is trusted only when every source sample in its bin (and the ones bracketing it) is measured
    bad = np.concatenate([np.zeros((len(X), 1)), np.cumsum(~valid, axis=1)], axis=1)
    lo = np.clip(np.searchsorted(wn, edges[:-1], side='right') - 1, 0, len(wn) - 1)
    hi = np.clip(np.searchsorted(wn, edges[1:], side='left'), 0, len(wn) - 1)
    nbad = bad[:, hi + 1] - bad[:, lo]
    Ce = _interp_rows(wn, C, np.clip(edges, wn[0], wn[-1]))
    R = (Ce[:, 1:] - Ce[:, :-1]) / np.diff(edges)
    R[nbad > 0] = np.nan
    R[:, (edges[:-1] < wn[0] - 1e-9) | (edges[1:] > wn[-1] + 1e-9)] = np.nan
    return R.astype(np.float32)

UNITS = ('A', '%T', 'T', '%R', 'R')

def to_absorbance(X, units='A'):
    "Convert intensities in `units` (absorbance 'A', transmittance '%T' or 'T', reflectance '%R' or 'R') to absorbance, log10(1/x)."
    X = np.asarray(X, np.float64)
    if units == 'A': return X
    if units not in UNITS: raise ValueError(f"unknown units {units!r}: use one of {UNITS}")
    T = X / 100 if units.startswith('%') else X
    with np.errstate(divide='ignore', invalid='ignore'): return np.where(T > 0, -np.log10(T), np.nan)

def guess_units(X):
    "Per spectrum, 'A', '%T' or 'T' judged from the shape: transmittance has a high baseline and downward bands."
    X = np.atleast_2d(np.asarray(X, np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        lo, med, hi = np.nanmin(X, 1), np.nanmedian(X, 1), np.nanmax(X, 1)
    dips = (med - lo) > 2 * (hi - med)
    return np.where(dips & (med > 20) & (hi < 150), '%T', np.where(dips & (med > 0.2) & (hi < 1.6), 'T', 'A'))

# --- mp_cnn/preprocess.py at 4fd7797
MIN_POINTS = 10
STEPS = {}
def _step(f):
    "Register `f` as a pipeline step under its name."
    STEPS[f.__name__] = f
    return f

def _spans(X):
    "First and one-past-last finite column of every row."
    fin = np.isfinite(X)
    first = fin.argmax(1)
    last = X.shape[1] - fin[:, ::-1].argmax(1)
    last[~fin.any(1)] = 0
    return first, last

def _by_span(X, fn, min_len=1):
    "Apply `fn(block)` to the finite span of every row, rows with the same span together; interior NaN bridged, then restored."
    out = X.copy()
    first, last = _spans(X)
    for a, b in set(zip(first.tolist(), last.tolist())):
        if b - a < min_len: continue
        rows = np.flatnonzero((first == a) & (last == b))
        B = X[rows, a:b]
        gap = np.isnan(B)
        if gap.any():
            idx = np.arange(b - a)
            B = np.array([np.interp(idx, idx[~g], r[~g]) if g.any() else r for r, g in zip(B, gap)])
        R = fn(B)
        R[gap] = np.nan
        out[rows, a:b] = R
    return out

@_step
def absorbance(wn, X, units='auto'):
    "Convert to absorbance with `data.to_absorbance`: `units` 'A', '%T', 'T', '%R', 'R', or 'auto' (per row, by `guess_units`)."
    if units != 'auto': return wn, to_absorbance(X, units)
    u = guess_units(X)
    out = X.copy()
    for k in set(u) - {'A'}: out[u == k] = to_absorbance(X[u == k], k)
    return wn, out

@_step
def conform(wn, X, lo=650., hi=4000., res=4.):
    "Resample onto the grid `np.arange(lo, hi, res)` (or, with `res=None`, keep the native points in [lo, hi])."
    if res is None:
        keep = (wn >= lo) & (wn <= hi)
        return wn[keep], X[:, keep]
    grid = np.arange(lo, hi, res, dtype=np.float64)
    return grid, resample_array(wn, X, grid).astype(np.float64)

@_step
def flatten(wn, X, lo=2200., hi=2420., mode='line'):
    "Replace the band [lo, hi] (default: CO2) by the straight line between its edge values (`mode='line'`) or by NaN (`mode='nan'`)."
    band = np.flatnonzero((wn >= lo) & (wn <= hi))
    if not len(band): return wn, X
    X = X.copy()
    if mode == 'nan': X[:, band] = np.nan; return wn, X
    if mode != 'line': raise ValueError(f"mode must be 'line' or 'nan', not {mode!r}")
    i0, i1 = max(band[0] - 1, 0), min(band[-1] + 1, len(wn) - 1)
    a, b = X[:, i0].copy(), X[:, i1].copy()
    a, b = np.where(np.isnan(a), b, a), np.where(np.isnan(b), a, b)
    t = (wn[band] - wn[i0]) / max(wn[i1] - wn[i0], 1e-12)
    line = a[:, None] + (b - a)[:, None] * t
    X[:, band] = np.where(np.isnan(X[:, band]) & np.isnan(line), np.nan, line)
    return wn, X

def _savgol_edges(window, polyorder, deriv):
    "scipy's own edge operators (mode 'interp'): the first and last `window // 2` outputs as matrices over the first and last `window` inputs."
    E = savgol_filter(np.eye(window), window, polyorder, deriv=deriv, axis=1)
    return E[:, :window // 2], E[:, window - window // 2:]

@_step
def smooth(wn, X, window=11, polyorder=3, deriv=0, abs=False):
    "Savitzky-Golay smoothing (`deriv=0`) or derivative over each row's finite span; `abs=True` then takes the absolute value."
    def f(B):
        w = min(window, B.shape[1] - (1 - B.shape[1] % 2))
        if w <= polyorder: return np.full_like(B, np.nan) if deriv else B
        return savgol_filter(B, w, polyorder, deriv=deriv, axis=1)
    first, last = _spans(X)
    cols = np.arange(X.shape[1])
    inside = (cols >= first[:, None]) & (cols < last[:, None])
    fast = (last - first >= window) & (np.isfinite(X) == inside).all(1)   # one unbroken span at least a window long
    out = np.full_like(X, np.nan)
    if (~fast).any(): out[~fast] = _by_span(X[~fast], f)                  # gaps, short spans: span by span
    if fast.any():   # all rows at once: one filter pass (right wherever the window lies inside the span), then the edges
        r, a, b = np.flatnonzero(fast), first[fast], last[fast]
        Y = savgol_filter(np.where(inside[r], X[r], 0.), window, polyorder, deriv=deriv, axis=1, mode='constant')
        L, R = _savgol_edges(window, polyorder, deriv)
        h, k = window // 2, np.arange(len(r))[:, None]
        Y[k, a[:, None] + np.arange(h)] = X[r[:, None], a[:, None] + np.arange(window)] @ L
        Y[k, b[:, None] - h + np.arange(h)] = X[r[:, None], b[:, None] - window + np.arange(window)] @ R
        out[r] = np.where(inside[r], Y, np.nan)
    return wn, np.abs(out) if abs else out

NORMS = ('minmax', 'snv', 'vector')

@_step
def normalise(wn, X, method='snv'):
    "Normalise each row over its finite points: 'minmax' to [0, 1], 'snv' to mean 0 sd 1, 'vector' to unit L2 norm."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        if method == 'minmax': lo, scale = np.nanmin(X, 1, keepdims=True), np.nanmax(X, 1, keepdims=True) - np.nanmin(X, 1, keepdims=True)
        elif method == 'snv': lo, scale = np.nanmean(X, 1, keepdims=True), np.nanstd(X, 1, keepdims=True)
        elif method == 'vector': lo, scale = 0., np.sqrt(np.nansum(X ** 2, 1, keepdims=True))
        else: raise ValueError(f"unknown normalisation {method!r}: use one of {NORMS}")
    return wn, (X - lo) / np.where(scale > 0, scale, 1)

@_step
def fillna(wn, X, value=0.):
    "Replace NaN (ranges a spectrum does not cover) by `value`: the last step before a model."
    return wn, np.where(np.isnan(X), value, X)

class Pipeline:
    "A list of steps `{'step': name, **params}` applied in order to a `Spectra`; JSON-serialisable via `.config`."
    def __init__(self, steps, check=True):
        self.steps, self.check = [dict(s) for s in steps], check
        for s in self.steps:
            if s.get('step') not in STEPS: raise ValueError(f"unknown step {s.get('step')!r} in {s}: use one of {list(STEPS)}")
            params = {k: v for k, v in s.items() if k != 'step'}
            try: inspect.signature(STEPS[s['step']]).bind(None, None, **params)
            except TypeError as e: raise ValueError(f"bad parameters for step {s['step']!r} in {s}: {e}") from None
        json.dumps(self.steps)  # fails early if a parameter is not plain JSON

    @property
    def config(self): return [dict(s) for s in self.steps]
    @classmethod
    def from_config(cls, cfg):
        "A `Pipeline` from `.config` or its JSON string."
        return cls(json.loads(cfg) if isinstance(cfg, str) else cfg)

    def __call__(self, spectra):
        "The processed spectra (same `meta`), float32."
        if self.check: check_spectra(spectra)
        wn, X = spectra.wavenumbers, spectra.X.astype(np.float64)
        for s in self.steps:
            wn, X = STEPS[s['step']](wn, X, **{k: v for k, v in s.items() if k != 'step'})
        return spectra.with_X(X.astype(np.float32), wn)

# --- mp_cnn/classify.py at 4fd7797 (prepare and probabilities, as functions of a Classifier)
def _softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)

def _to_absorbance(self:Classifier, spectra):
    "`spectra.X` in absorbance, row by row from `units_published` (the checkpoint's own rule where absent)."
    wn, X = spectra.wavenumbers, spectra.X.astype(np.float64)
    if self._units_step is None: return X
    default = self._units_step.get('units', 'auto')
    units = spectra.meta['units_published'].fillna(default).astype(str).to_numpy() if 'units_published' in spectra.meta else np.full(len(X), default)
    out = np.empty_like(X)
    for u in np.unique(units): out[units == u] = STEPS['absorbance'](wn, X[units == u], units=u)[1]
    return out

def _prepare(self:Classifier, spectra, units=None):
    "(model input for the rows that can be classified, float32 on the grid; flags of all rows)."
    sp = as_spectra(spectra, units)
    flags = input_flags(sp, self.grid)
    ok = flags == ''
    if not ok.any(): return np.zeros((0, len(self.grid)), np.float32), flags
    sub = sp[np.flatnonzero(ok)]
    A = self._to_absorbance(sub)
    bad = ~np.isfinite(A).any(1)    # e.g. %T declared on data that is not
    flags[np.flatnonzero(ok)[bad]] = 'no valid absorbance (wrong units?)'
    X = self.pipe(Spectra(sub.wavenumbers, A[~bad])).X
    return np.ascontiguousarray(X, dtype=np.float32), flags

def _probabilities(self:Classifier, X, bs=1024):
    "Softmax probabilities (n x classes, float32) for model input `X`."
    import torch
    out = np.zeros((len(X), len(self.classes)), np.float32)
    with torch.inference_mode():
        for a in range(0, len(X), bs): out[a:a + bs] = _softmax(self.model(torch.from_numpy(X[a:a + bs])).numpy())
    return out


# --- the reference classifier: today's prepare + probabilities on the shipped checkpoint
class Reference:
    "Today's `Classifier.prepare` and `probabilities` on checkpoint `path` (default: the shipped model)."
    def __init__(self, path=None):
        from mp_cnn.train import load_checkpoint, checkpoint_grid
        from mp_cnn.classify import pretrained_dir
        self.model, self.config = load_checkpoint(path or pretrained_dir())
        self.classes, self.grid = list(self.config['classes']), checkpoint_grid(self.config)
        steps = list(self.config['preprocess'])
        self._units_step = steps[0] if steps and steps[0]['step'] == 'absorbance' else None
        self.pipe = Pipeline(steps[1:] if self._units_step else steps, check=False)
    _to_absorbance, prepare, probabilities = _to_absorbance, _prepare, _probabilities
