"""Leave-one-source-out ablation of training levers for lenet_1d (issue 12): one row per (held-out source, lever, seed) in
results/loso_ablation.csv, with accuracy over all classes and over named polymers only (test spectra whose true class is
neither other_plastic nor non_plastic), and library search DEFAULT on the same folds as the reference row.

    MP_CNN_DATA=/work/shared/data nice -n 19 python scripts/ablate_loso.py --levers search_default,base --seeds 0
    MP_CNN_DATA=/work/shared/data nice -n 19 python scripts/ablate_loso.py --levers min_signal --seeds 0
    python scripts/ablate_loso.py --table                      # the LOSO table (both forms) from the CSV

A lever is a set of keyword arguments to `cnn_classifier` (chapter 5); `base` is the shipped recipe (gpu profile). Rows
already in the CSV are skipped, so a stopped run resumes; predictions go to runs/loso_ablation/ (git-ignored).
"""
import argparse, datetime, shlex, sys
from pathlib import Path
import numpy as np, pandas as pd

from mp_cnn.data import load_corpus
from mp_cnn.preprocess import DEFAULT
from mp_cnn.checkpoint import git_commit
from mp_cnn.evaluate import evaluate, search_classifier, cnn_classifier, hardware, LOSO_SOURCES

UNNAMED = ('other_plastic', 'non_plastic')
LEVERS = {'search_default': None,                     # library search, DEFAULT pipeline: the reference
          'base': {},                                 # the shipped recipe
          'min_signal': dict(min_signal=15.),         # training spectra with signal_score < 15 dropped (test folds untouched)
          'source_balanced': dict(source_balanced=True)}   # each source weighted equally within a class when balancing

def named_accuracy(y, pred, classes):
    "Accuracy over the spectra whose true class is a named polymer (not in `UNNAMED`), and how many there are."
    keep = ~np.isin(np.asarray(classes)[y], UNNAMED)
    return (float((y[keep] == pred[keep]).mean()) if keep.any() else float('nan')), int(keep.sum())

def run(a):
    sp, out = load_corpus(), Path(a.out)
    cmd = 'python scripts/ablate_loso.py ' + ' '.join(shlex.quote(x) for x in sys.argv[1:])
    for seed in a.seeds:
        for lever in a.levers:
            done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=['lever', 'seed', 'held_out'])
            have = set(done.held_out[(done.lever == lever) & (done.seed == seed)])
            todo = [s for s in a.sources if s not in have]
            if not todo: continue
            kw = LEVERS[lever]
            clf = search_classifier(DEFAULT) if kw is None else cnn_classifier('lenet_1d', a.profile, None, seed, device='cpu', **kw)
            for row in evaluate(clf, sp, 'loso', lever, seed, sources=todo):
                y, pred, classes = row.pop('_y'), row.pop('_pred'), row.pop('_classes'); row.pop('_model')
                row['named_accuracy'], row['n_named'] = named_accuracy(y, pred, classes)
                Path(a.runs).mkdir(parents=True, exist_ok=True)
                np.savez(Path(a.runs, f"{lever}_s{seed}_{row['held_out']}.npz"), y=y, pred=pred, classes=np.array(classes))
                row = dict(lever=lever, **{k: v for k, v in row.items() if k != 'model'}, profile=a.profile if kw is not None else '',
                           hardware=hardware(), commit=git_commit(), date=datetime.datetime.now().isoformat(timespec='seconds'), command=cmd)
                df = pd.concat([pd.read_csv(out), pd.DataFrame([row])]) if out.exists() else pd.DataFrame([row])
                df.to_csv(out, index=False)
                print(f"{lever:16s} seed {seed} {row['held_out']:22s} acc {row['accuracy']:.3f} named {row['named_accuracy']:.3f} "
                      f"{row['wall_s']:.0f}s", flush=True)

def table(path='results/loso_ablation.csv'):
    "Per held-out lab and lever: mean accuracy over seeds (all classes / named polymers), the LOSO mean, and the seeds' spread."
    df = pd.read_csv(path)
    g = df.groupby(['lever', 'held_out'], sort=False)
    per = g[['accuracy', 'named_accuracy']].mean().unstack('held_out')
    rows = []
    for form, col in (('all classes', 'accuracy'), ('named polymers', 'named_accuracy')):
        t = per[col].reindex(columns=[s for s in LOSO_SOURCES if s in per[col].columns])
        t['mean'] = t.mean(1)
        seed_means = df.groupby(['lever', 'seed'])[col].mean().groupby('lever')
        t['seeds'] = seed_means.size(); t['sd_over_seeds'] = seed_means.std()
        rows.append(t.assign(form=form).reset_index().set_index(['form', 'lever']))
    return pd.concat(rows).round(3)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--levers', type=lambda s: s.split(','), default=['search_default', 'base'])
    p.add_argument('--seeds', type=lambda s: [int(x) for x in s.split(',')], default=[0])
    p.add_argument('--sources', type=lambda s: s.split(','), default=list(LOSO_SOURCES))
    p.add_argument('--profile', default='gpu')
    p.add_argument('--out', default='results/loso_ablation.csv')
    p.add_argument('--runs', default='runs/loso_ablation')
    p.add_argument('--table', action='store_true')
    a = p.parse_args(argv)
    if a.table: return print(table(a.out).to_string())
    unknown = set(a.levers) - set(LEVERS)
    if unknown: p.error(f"unknown lever(s) {sorted(unknown)}: choose from {sorted(LEVERS)}")
    run(a)

if __name__ == '__main__': main()
