"""Spectral quality of the corpus (issue 12): chapter 4a's `signal_score` for every labelled spectrum, counted per source and
class below a threshold, with the evidence for the threshold and a check against a synthetic water-vapour blank.

    MP_CNN_DATA=/work/shared/data python scripts/corpus_quality.py            # -> results/corpus_quality.csv, corpus_quality_bins.csv

Typicality: Pearson r (DEFAULT preprocessing) of a spectrum with the median spectrum of its own source and class; a spectrum
below 0.3 looks little like the others its lab labelled the same. The threshold is where, going down the score, the low
scorers stop being typical spectra. Blank: chapter 2's `atmosphere_bands` water-vapour lines (0.01 absorbance at the
strongest) plus Gaussian noise, DEFAULT-preprocessed like the corpus (its lines sit at seeded random positions, not at
real water-vapour line positions). Coherence: where a class has spectra below the threshold, the mean pairwise r among
them (`r_below_pairwise`) and their mean r with the median of the class's other spectra (`r_below_vs_rest`).
"""
import argparse, datetime
from pathlib import Path
import numpy as np, pandas as pd

from mp_cnn.spectra import Spectra
from mp_cnn.corpus import load_corpus
from mp_cnn.preprocess import Pipeline, DEFAULT_STEPS
from mp_cnn.augment import atmosphere_bands
from mp_cnn.checkpoint import git_commit
from mp_cnn.recipe import signal_score

def unit(A):
    "Rows centred and scaled to unit norm, so that dot products are Pearson r."
    A = A - A.mean(-1, keepdims=True)
    return A / np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-12)

def typicality(sp, X):
    "r of each preprocessed spectrum in `X` with the median spectrum of its (source, class)."
    r = np.zeros(len(sp))
    for _, idx in sp.meta.groupby(['source', 'label']).indices.items(): r[idx] = unit(X[idx]) @ unit(np.median(X[idx], 0))
    return r

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threshold', type=float, default=15.)
    p.add_argument('--out', default='results/corpus_quality.csv')
    a = p.parse_args(argv)
    sp = load_corpus()
    pre = Pipeline.from_config(DEFAULT_STEPS)
    X = np.asarray(pre(sp).X, np.float64)
    m = sp.meta[['source', 'label', 'sample_id']].assign(score=signal_score(sp), typicality=typicality(sp, X))
    wn, rng = sp.wavenumbers, np.random.default_rng(0)
    noise = (0., 1e-4, 3e-4, 1e-3)
    blanks = Spectra(wn, np.stack([0.01 * atmosphere_bands(wn)[1] + rng.normal(0, s, len(wn)) for s in noise]))
    R = unit(X) @ unit(np.asarray(pre(blanks).X, np.float64)).T
    m['r_blank'] = R.max(1)
    low = m.score < a.threshold

    bins = pd.cut(m.score, [0, 5, 10, 15, 20, 30, 40, 60, np.inf], right=False)
    by_bin = m.groupby(bins, observed=False).agg(spectra=('score', 'size'), atypical_share=('typicality', lambda r: (r < .3).mean()),
                                                 median_typicality=('typicality', 'median')).round(3)
    by_bin.index = by_bin.index.astype(str)
    stamp = dict(threshold=a.threshold, commit=git_commit(), date=datetime.datetime.now().isoformat(timespec='seconds'),
                 command='MP_CNN_DATA=/work/shared/data python scripts/corpus_quality.py' + (f' --threshold {a.threshold:g}' if a.threshold != 15 else ''))
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    by_bin.reset_index().rename(columns={'score': 'score_bin'}).assign(**stamp).to_csv(out.with_name(out.stem + '_bins.csv'), index=False)
    g = m.assign(low=low, low_atypical=low & (m.typicality < .3)).groupby(['source', 'label'])
    coh = {}
    for key, idx in m.groupby(['source', 'label']).indices.items():   # are a class's low scorers one shared pattern (a blank), unlike the rest?
        lo, hi = idx[low.to_numpy()[idx]], idx[~low.to_numpy()[idx]]
        if len(lo) < 2 or len(hi) < 2: continue
        U = unit(X[lo]); n = len(lo)
        coh[key] = dict(r_below_pairwise=((U @ U.T).sum() - n) / (n * n - n), r_below_vs_rest=float((U @ unit(np.median(X[hi], 0))).mean()))
    t = g.agg(spectra=('score', 'size'), below=('low', 'sum'), below_atypical=('low_atypical', 'sum'),
              score_p1=('score', lambda s: s.quantile(.01)), score_p5=('score', lambda s: s.quantile(.05)),
              score_median=('score', 'median'), atypical=('typicality', lambda r: int((r < .3).sum())),
              r_blank_max=('r_blank', 'max'))
    t = t.join(pd.DataFrame.from_dict(coh, orient='index').rename_axis(['source', 'label'])).round(3).reset_index()
    t.assign(**stamp).to_csv(out, index=False)

    print(f"signal_score over {len(m)} spectra: percentiles 0.1/1/5/50 = {np.round(m.score.quantile([.001, .01, .05, .5]).values, 1)}; "
          f"typicality < 0.3 for {(m.typicality < .3).mean():.3f} of all spectra")
    print(by_bin.to_string())
    print(f"\nbelow {a.threshold:g}: {low.sum()} spectra ({(m.typicality[low] < .3).mean():.2f} atypical)")
    print(t[t.below > 0][['source', 'label', 'spectra', 'below', 'below_atypical', 'score_median', 'r_below_pairwise', 'r_below_vs_rest']].to_string(index=False))
    print(f"\nsynthetic water-vapour blank (noise sd {noise}): its scores {np.round(signal_score(blanks), 1)}; "
          f"highest r with any corpus spectrum {R.max():.3f} ({m.source[R.max(1).argmax()]} {m.label[R.max(1).argmax()]})")
    vc = m[(m.source == 'villegas_camacho_2024') & (m.label == 'PVC')].sort_values('score')
    print(f"Villegas-Camacho PVC: {len(vc)} spectra, {int((vc.score < a.threshold).sum())} below {a.threshold:g}, "
          f"{int((vc.typicality < .3).sum())} atypical; r with the blank at most {vc.r_blank.max():.3f}; the 8 lowest:")
    print(vc.head(8)[['sample_id', 'score', 'typicality', 'r_blank']].round(3).to_string(index=False))

if __name__ == '__main__': main()
