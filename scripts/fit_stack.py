"""Fit the shipped classifier's stacking (chapter 5b, issue 12) and check it on the group split.

`fit`: the weight w of library search in argmax(log p + w atanh(r)) and the temperature T, fitted on the leave-one-source-out
predictions of the five LOSO labs, pooled over the seeds given: each lab predicted by a lenet_1d trained without it (the nets
`ablate_loso.py --levers stack_loso_medoid` caches in runs/loso_ablation/nets) and matched against a medoid library of the other
labs' spectra, as the classifier's own library is built. This is the selection each LOSO fold of the `stack_loso_medoid_ratio`
lever made on its inner folds, made once more on the outer folds for the model that trains on all five labs. Writes
mp_cnn/pretrained/stack.json, then refits the shipped checkpoint's open-set thresholds and calibration on its own calibration
split with the stacked answer (chapter 6's `fit_answer`); the network's weights are not touched.

`group`: the group split (chapter 5's `protocol_splits(..., 'group', seed)`): a lenet_1d (gpu profile) trained on its training part
on this CPU (cached in runs/stack), the medoid library of the same part, and the shipped w and T; one row per answer (network,
library search on the medoid library, stacked) in results/stack.csv.

    MP_CNN_DATA=../shared/data python scripts/fit_stack.py fit --seeds 0,1,2
    MP_CNN_DATA=../shared/data OMP_NUM_THREADS=2 python scripts/fit_stack.py group --seed 0
"""
import argparse, datetime, importlib.util, json, shlex, sys, time
from pathlib import Path
import numpy as np, pandas as pd

from mp_cnn.corpus import load_corpus
from mp_cnn.checkpoint import git_commit
from mp_cnn.augment import label_codes
from mp_cnn.evaluate import LOSO_SOURCES, protocol_splits, cnn_classifier, hardware
from mp_cnn.stack import stack_features, stack_logits, fit_weight, fit_temperature, stacked

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('ablate_loso', ROOT/'scripts'/'ablate_loso.py')
al = importlib.util.module_from_spec(spec); spec.loader.exec_module(al)
PRETRAINED = ROOT/'mp_cnn'/'pretrained'

def loso_signals(sp, classes, seeds, cache, profile='gpu'):
    "{(lab, seed): (log p, z, y)} for every LOSO lab and seed whose net without that lab is cached."
    out = {}
    for held in LOSO_SOURCES:
        (_, train, test), = protocol_splits(sp, 'loso', 0, sources=[held])   # the loso split does not depend on the seed
        R, y = None, label_codes(test, classes)
        for seed in seeds:
            key = Path(cache, f"s{seed}_{profile}_{held}.npz")
            if not key.exists(): print(f"no cached net for {held} at seed {seed}: skipped"); continue
            _, held_all = al.split_by_source(sp, held)
            P = np.load(key)['P'][held_all.labels.isin(set(train.labels)).to_numpy()]
            if R is None: R = al.medoid_top_r(test, train, classes)
            out[held, seed] = (*stack_features(P, R), y)
    return out

def fit(a, sp, classes):
    sig = loso_signals(sp, classes, a.seeds, a.cache)
    if not sig: sys.exit("no cached LOSO nets: run ablate_loso.py --levers stack_loso_medoid first")
    l, z, y = (np.concatenate([v[j] for v in sig.values()]) for j in range(3))
    w = fit_weight(l, z, y)
    T = fit_temperature(stack_logits(l, z, w), y)
    acc = lambda L, y: round(float((L.argmax(1) == y).mean()), 4)
    per_lab = {f"{lab} (seed {seed})": dict(n=len(yy), network=acc(ll, yy), search=acc(zz, yy), stacked=acc(stack_logits(ll, zz, w), yy))
               for (lab, seed), (ll, zz, yy) in sig.items()}
    stack = dict(score='log p + w atanh(r)', w=w, T=round(T, 4),
                 fitted_on=f"leave-one-source-out predictions of {sorted({k[0] for k in sig})} at seeds {sorted({k[1] for k in sig})} "
                           f"({len(y)} spectra): w by accuracy (`fit_weight`), T by log-loss (`fit_temperature`)",
                 per_lab_in_sample=per_lab, commit=git_commit(), date=datetime.datetime.now().isoformat(timespec='seconds'),
                 command='python scripts/fit_stack.py ' + ' '.join(map(shlex.quote, sys.argv[1:])))
    print(json.dumps({k: v for k, v in stack.items() if k != 'per_lab_in_sample'}, indent=1))
    print(pd.DataFrame(per_lab).T.to_string())
    from mp_cnn.classify import fit_answer
    Path(a.out).mkdir(parents=True, exist_ok=True)
    clf = fit_answer(a.out, sp, stack)
    print(clf, '\n', clf.rule, '\ncalibration accuracy', round(clf.calibration['accuracy'], 4))

def group(a, sp, classes):
    stack = json.loads((Path(a.out)/'stack.json').read_text())
    (_, train, test), = protocol_splits(sp, 'group', a.seed)
    key = Path(a.cache).parent/'stack'/f"group_s{a.seed}_gpu.npz"
    key.parent.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        t0 = time.time()
        _, P, info = cnn_classifier('lenet_1d', 'gpu', None, a.seed, device='cpu')(train, test, classes)
        np.savez(key, P=P, train_s=info['train_s'], wall_s=time.time() - t0)
    z = np.load(key); P = z['P']
    R, y = al.medoid_top_r(test, train, classes), label_codes(test, classes)
    answers = dict(network=P, search_medoid=R, stacked=stacked(P, R, stack['w'], stack['T']))
    common = dict(protocol='group', seed=a.seed, n_train=len(train), n_test=len(test), w=stack['w'], T=stack['T'], train_s=round(float(z['train_s']), 1),
                  profile='gpu', hardware=hardware(), commit=git_commit(), stack_commit=stack['commit'],
                  date=datetime.datetime.now().isoformat(timespec='seconds'), command='python scripts/fit_stack.py ' + ' '.join(map(shlex.quote, sys.argv[1:])))
    rows = []
    for name, Q in answers.items():
        pred = Q.argmax(1)
        named, n_named = al.named_accuracy(y, pred, classes)
        rows.append(dict(answer=name, accuracy=float((pred == y).mean()), named_accuracy=named, n_named=n_named, **common))
    df = pd.DataFrame(rows)
    print(df[['answer', 'accuracy', 'named_accuracy', 'n_test', 'w', 'T']].to_string())
    out = ROOT/'results'/'stack.csv'
    old = pd.read_csv(out) if out.exists() else None
    if old is not None: old = old[~((old.protocol == 'group') & (old.seed == a.seed))]
    pd.concat([old, df]).to_csv(out, index=False)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('what', choices=['fit', 'group'])
    p.add_argument('--seeds', type=lambda s: [int(x) for x in s.split(',')], default=[0, 1, 2])
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=str(PRETRAINED), help='the checkpoint to stack (fit) or whose stack.json to check (group)')
    p.add_argument('--cache', default=str(ROOT/'runs'/'loso_ablation'/'nets'))
    a = p.parse_args(argv)
    sp = load_corpus()
    classes = sorted(sp.labels.astype(str).unique())
    (fit if a.what == 'fit' else group)(a, sp, classes)

if __name__ == '__main__': main()
