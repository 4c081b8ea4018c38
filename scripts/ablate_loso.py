"""Leave-one-source-out ablation of training levers for lenet_1d (issue 12): one row per (held-out source, lever, seed) in
results/loso_ablation.csv, with accuracy over all classes and over named polymers only (test spectra whose true class is
neither other_plastic nor non_plastic), and library search DEFAULT on the same folds as the reference row.

    MP_CNN_DATA=/work/shared/data nice -n 19 python scripts/ablate_loso.py --levers search_default,base --seeds 0
    MP_CNN_DATA=/work/shared/data nice -n 19 python scripts/ablate_loso.py --levers min_signal --seeds 0
    python scripts/ablate_loso.py --table                      # the LOSO table (both forms) from the CSV
    python scripts/ablate_loso.py --readme                     # results/README.md's section, written from the CSVs

A lever is a set of keyword arguments to `cnn_classifier` (chapter 5); `base` is the shipped recipe (gpu profile). Rows
already in the CSV are skipped, so a stopped run resumes; predictions go to runs/loso_ablation/ (git-ignored).

`stack` is a learned combination of the CNN with library search, fitted inside the training sources only: their physical
samples are split (`split_groups`, 20% of every class) into a fit part and a calibration part; a lenet_1d trained on the fit
part and library search against the fit part (DEFAULT_STEPS) give the calibration part's features (CNN log-probabilities and, per
class, the highest Pearson r of any reference of that class), on which two stackers are fitted: `stack`, a multinomial logistic
regression on all 2k features (standardised, L2, class-balanced), and `stack_tied`, logit_c = a log p_c + b atanh(r_c) (two
weights shared by all classes). The held-out lab is then predicted from the CNN trained as `base` is (all training sources,
same seed) and library search against all training spectra; `stack_cnn` is that CNN alone (the same net, so `base` rerun).
Nothing fitted or chosen sees the held-out lab.

    MP_CNN_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 19 python scripts/ablate_loso.py --levers stack --seeds 0
"""
import argparse, datetime, fcntl, json, os, shlex, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch, torch.nn.functional as F

from mp_cnn.corpus import load_corpus
from mp_cnn.preprocess import DEFAULT_STEPS, OPEN_SPECY_STEPS
from mp_cnn.checkpoint import git_commit
from mp_cnn.augment import split_groups, split_by_source, label_codes
from mp_cnn.train import PROFILES
from mp_cnn.stack import stack_features, stack_logits, fit_weight
from mp_cnn.evaluate import (evaluate, search_classifier, cnn_classifier, hardware, LOSO_SOURCES, preprocessed, protocol_splits,
                             scores)

UNNAMED = ('other_plastic', 'non_plastic')
REFS = ('search_default', 'search_openspecy')   # library search: what every lever is measured against
LEVERS = {'search_default': None,                     # library search, DEFAULT pipeline: the reference
          'search_openspecy': 'openspecy',            # library search, Open Specy's pipeline: the other reference
          'base': {},                                 # the shipped recipe
          'min_signal': dict(min_signal=15.),         # training spectra with signal_score < 15 dropped (test folds untouched)
          'source_balanced': dict(source_balanced=True),   # each source weighted equally within a class when balancing
          'stack': 'stack',                           # CNN + library search stacked inside the training sources (rows stack, stack_tied, stack_cnn)
          'stack_loso': 'stack_loso',                 # the same stackers fitted on leave-one-source-out predictions within the training sources
          'stack_loso_medoid': 'stack_loso_medoid'}   # stack_loso with the per-class r against a medoid library, as the shipped rule's
STACK_ROWS = ('stack', 'stack_tied', 'stack_cnn')

def named_accuracy(y, pred, classes):
    "Accuracy over the spectra whose true class is a named polymer (not in `UNNAMED`), and how many there are."
    keep = ~np.isin(np.asarray(classes)[y], UNNAMED)
    return (float((y[keep] == pred[keep]).mean()) if keep.any() else float('nan')), int(keep.sum())

def class_top_r(Q, # preprocessed queries, n x points (finite)
                L, # preprocessed library, m x points (finite)
                codes, # class code of every library row
                n_classes:int, # k
                chunk:int=1024, # query rows per matrix product
               ) -> np.ndarray:
    "(n, k): the highest Pearson r of every query against the library spectra of each class (-1 where a class has none)."
    unit = lambda X: (lambda D: D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-12))(X - X.mean(1, keepdims=True))
    Lu, codes = unit(np.asarray(L, np.float64)).astype(np.float32), np.asarray(codes)
    out = np.full((len(Q), n_classes), -1., np.float32)
    for a in range(0, len(Q), chunk):
        r = unit(np.asarray(Q[a:a + chunk], np.float64)).astype(np.float32) @ Lu.T
        for c in np.unique(codes): out[a:a + chunk, c] = r[:, codes == c].max(1)
    return out

def fit_stacker(logp, z, y, n_classes, tied=False, wd=1e-3, steps=300):
    """A stacker fitted by LBFGS on class-balanced cross-entropy; returns predict(logp, z) -> probabilities. `tied`: logit_c = a logp_c + b z_c;
    else a multinomial logistic regression on the standardised 2k features with L2 penalty `wd`."""
    X = torch.as_tensor(np.concatenate([logp, z], 1), dtype=torch.float32)
    y = torch.as_tensor(y)
    w = 1 / torch.bincount(y, minlength=n_classes).clamp(min=1).float()
    k = n_classes
    if tied: W = torch.tensor([1., 1.], requires_grad=True); mu, sd = torch.zeros(2 * k), torch.ones(2 * k)
    else:
        mu, sd = X.mean(0), X.std(0) + 1e-6
        torch.manual_seed(0); lin = torch.nn.Linear(2 * k, k)
    logits = (lambda X: W[0] * X[:, :k] + W[1] * X[:, k:]) if tied else (lambda X: lin((X - mu) / sd))
    params = [W] if tied else list(lin.parameters())
    opt = torch.optim.LBFGS(params, lr=1, max_iter=steps, history_size=20, line_search_fn='strong_wolfe')
    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits(X), y, weight=w / w.mean()) + (0 if tied else wd * lin.weight.pow(2).sum())
        loss.backward(); return loss
    opt.step(closure)
    def predict(logp, z):
        with torch.no_grad(): return logits(torch.as_tensor(np.concatenate([logp, z], 1), dtype=torch.float32)).softmax(1).numpy()
    predict.weights = [round(float(x), 3) for x in W.detach()] if tied else None
    return predict

def fit_ratio(logp, z, y, grid=None):
    """The weight w in argmax(log p + w z) with the highest accuracy on (logp, z, y) (chapter 5b's `fit_weight`: w from 0, the CNN alone,
    to inf, search alone; the middle of ties); returns predict(logp, z) -> probabilities (softmax of the combination) with `predict.weights` = [1, w]."""
    w = fit_weight(logp, z, y, grid)
    def predict(logp, z):
        L = stack_logits(logp, z, w); L = L - L.max(1, keepdims=True); E = np.exp(L); return E / E.sum(1, keepdims=True)
    predict.weights = [1.0, w]
    return predict

def stack_fold(train, test, classes, profile, seed, cal_size=0.2):
    "One LOSO fold of the `stack` lever: {row name: (pred, probabilities, info)} for `STACK_ROWS`, and info common to all."
    k, t0 = len(classes), time.time()
    cnn = cnn_classifier('lenet_1d', profile, None, seed, device='cpu')
    fit, cal = split_groups(train, cal_size, seed)                 # by physical sample, inside the training sources only
    y_fit, y_cal = label_codes(fit, classes), label_codes(cal, classes)
    _, Pc, _ = cnn(fit, cal, classes)                              # a lenet_1d that never saw the calibration samples
    Rc = class_top_r(preprocessed(DEFAULT_STEPS, cal), preprocessed(DEFAULT_STEPS, fit), y_fit, k)
    lc, zc = stack_features(Pc, Rc)
    full, tied = fit_stacker(lc, zc, y_cal, k), fit_stacker(lc, zc, y_cal, k, tied=True)
    cal_acc = dict(cal_acc_cnn=float((Pc.argmax(1) == y_cal).mean()), cal_acc_search=float((Rc.argmax(1) == y_cal).mean()),
                   cal_acc_stack=float((full(lc, zc).argmax(1) == y_cal).mean()), cal_acc_stack_tied=float((tied(lc, zc).argmax(1) == y_cal).mean()))
    _, P, info = cnn(train, test, classes)                          # the CNN as `base` trains it: all training sources, same seed
    R = class_top_r(preprocessed(DEFAULT_STEPS, test), preprocessed(DEFAULT_STEPS, train), label_codes(train, classes), k)
    l, z = stack_features(P, R)
    info = dict({c: info[c] for c in ('params', 'train_s', 'epochs', 'n_fit', 'views', 'device', 'n_low_signal')},
                n_cal=len(cal), stack_tied_w=str(tied.weights), **cal_acc)
    out = {'stack': full(l, z), 'stack_tied': tied(l, z), 'stack_cnn': P}
    return {n: (Q.argmax(1), Q) for n, Q in out.items()}, dict(info, wall_s=round(time.time() - t0, 1))

def append_row(out, row):
    "Append `row` to the CSV `out` under an exclusive lock (several processes may run folds at once)."
    with open(str(out) + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        df = pd.concat([pd.read_csv(out), pd.DataFrame([row])]) if Path(out).exists() else pd.DataFrame([row])
        df.to_csv(out, index=False)

def run_stack(a, sp, seed, todo, commit, cmd):
    "The `stack` lever on the folds `todo`: three rows per fold (`STACK_ROWS`), predictions saved like `run`'s."
    classes = sorted(sp.labels.astype(str).unique())
    for held, train, test in protocol_splits(sp, 'loso', seed, sources=todo):
        preds, info = stack_fold(train, test, classes, a.profile, seed)
        y = label_codes(test, classes)
        for name, (pred, P) in preds.items():
            row = dict(lever=name, protocol='loso', held_out=held, n_train=len(train), n_test=len(test),
                       **scores(y, pred, P, len(classes)), seed=seed, **info)
            row['named_accuracy'], row['n_named'] = named_accuracy(y, pred, classes)
            Path(a.runs).mkdir(parents=True, exist_ok=True)
            np.savez(Path(a.runs, f"{name}_s{seed}_{held}.npz"), y=y, pred=pred, classes=np.array(classes))
            row.update(profile=a.profile, hardware=hardware(), commit=commit, date=datetime.datetime.now().isoformat(timespec='seconds'), command=cmd)
            append_row(a.out, row)
            print(f"{name:16s} seed {seed} {held:22s} acc {row['accuracy']:.3f} named {row['named_accuracy']:.3f} {row['wall_s']:.0f}s", flush=True)

def cached_net(sp, classes, out, profile, seed, cache, wait=True):
    """Probabilities (n_out, k) of lenet_1d (`profile`, `seed`) trained as `base` is on the corpus `sp` without the sources `out`, for every
    spectrum of those sources (corpus order), and its training seconds. Trained once and cached under `cache`; a process that finds the
    net claimed by another waits for it (`wait`; else returns None), so several processes can share the work."""
    key = Path(cache, f"s{seed}_{profile}_" + '__'.join(sorted(out)) + '.npz')
    claim = key.with_suffix('.claim')
    while not key.exists():
        try: os.close(os.open(claim, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            if not wait: return None
            time.sleep(10); continue
        train, test = split_by_source(sp, sorted(out))
        t0 = time.time()
        _, P, info = cnn_classifier('lenet_1d', profile, None, seed, device='cpu')(train, test, classes)
        np.savez(str(key) + '.tmp.npz', P=P, train_s=info['train_s'], wall_s=time.time() - t0)
        os.replace(str(key) + '.tmp.npz', key); claim.unlink()
        print(f"net without {sorted(out)} seed {seed}: {info['train_s']:.0f}s", flush=True)
    z = np.load(key)
    return z['P'], float(z['train_s'])

def medoid_top_r(q, lib, classes):
    "(n, k): the highest Pearson r of every query spectrum `q` against a medoid `Library` of `lib` (chapter 5a's `build_library`, in model-input space), per class (-1 where none)."
    from mp_cnn.openset import build_library
    L = build_library(lib, preprocessed(DEFAULT_STEPS, lib))
    per = L.match(preprocessed(DEFAULT_STEPS, q))[2]
    out = np.full((len(q), len(classes)), -1., np.float32)
    for j, c in enumerate(L.classes): out[:, classes.index(c)] = per[:, j]
    return out

def stack_loso_fold(sp, held, classes, profile, seed, cache, medoids=False):
    """One LOSO fold of `stack_loso`: the stackers of `stack` fitted on the training sources' own leave-one-source-out predictions (for
    every other LOSO source s: a net trained without `held` and s, library search against the corpus without both), then applied to the
    CNN trained as `base` is and library search against all training spectra. Returns ({row: (pred, P)}, info, train, test)."""
    k, t0 = len(classes), time.time()
    inner = [s for s in LOSO_SOURCES if s != held]
    feats, ys, accs, secs = [], [], [], []
    for s in inner:
        P, sec = cached_net(sp, classes, {held, s}, profile, seed, cache); secs.append(sec)
        lib, both = split_by_source(sp, [held, s])
        keep = both.meta['source'].eq(s).to_numpy()
        q = both[keep]; P = P[keep]
        ok = q.labels.isin(set(lib.labels)).to_numpy()               # as `protocol_splits` does: classes the inner training part has
        q, P = q[ok], P[ok]
        R = medoid_top_r(q, lib, classes) if medoids else class_top_r(preprocessed(DEFAULT_STEPS, q), preprocessed(DEFAULT_STEPS, lib), label_codes(lib, classes), k)
        feats.append(stack_features(P, R)); ys.append(label_codes(q, classes))
    lc, zc, y_cal = np.concatenate([f[0] for f in feats]), np.concatenate([f[1] for f in feats]), np.concatenate(ys)
    full, tied, ratio = fit_stacker(lc, zc, y_cal, k), fit_stacker(lc, zc, y_cal, k, tied=True), fit_ratio(lc, zc, y_cal)
    cal_acc = dict(cal_acc_cnn=float((lc.argmax(1) == y_cal).mean()), cal_acc_search=float((zc.argmax(1) == y_cal).mean()),
                   cal_acc_stack=float((full(lc, zc).argmax(1) == y_cal).mean()), cal_acc_stack_tied=float((tied(lc, zc).argmax(1) == y_cal).mean()),
                   cal_acc_stack_ratio=float((ratio(lc, zc).argmax(1) == y_cal).mean()), stack_ratio_w=str(ratio.weights))
    P, sec = cached_net(sp, classes, {held}, profile, seed, cache); secs.append(sec)
    _, held_all = split_by_source(sp, held)
    (_, train, test), = protocol_splits(sp, 'loso', seed, sources=[held])
    P = P[held_all.labels.isin(set(train.labels)).to_numpy()]
    R = medoid_top_r(test, train, classes) if medoids else class_top_r(preprocessed(DEFAULT_STEPS, test), preprocessed(DEFAULT_STEPS, train), label_codes(train, classes), k)
    l, z = stack_features(P, R)
    info = dict(train_s=round(secs[-1], 1), epochs=PROFILES[profile]['epochs'], n_cal=len(y_cal), stack_tied_w=str(tied.weights), **cal_acc,
                wall_s=round(sum(secs) + time.time() - t0, 1))                # training seconds of the fold's 5 nets (pair nets are shared) + stacking
    lev = 'stack_loso_medoid' if medoids else 'stack_loso'
    out = {lev: full(l, z), f'{lev}_tied': tied(l, z), f'{lev}_ratio': ratio(l, z)} | ({} if medoids else {f'{lev}_cnn': P})
    return {n: (Q.argmax(1), Q) for n, Q in out.items()}, info, train, test

def run_stack_loso(a, sp, seed, todo, commit, cmd, lever='stack_loso'):
    "The `stack_loso` (or `stack_loso_medoid`) lever on the folds `todo`: its rows per fold, predictions saved like `run`'s; nets cached in runs/.../nets."
    classes = sorted(sp.labels.astype(str).unique())
    cache = Path(a.runs, 'nets'); cache.mkdir(parents=True, exist_ok=True)
    nets = list(dict.fromkeys(frozenset(o) for h in todo for o in [*({h, s} for s in LOSO_SOURCES if s != h), {h}]))
    for o in nets: cached_net(sp, classes, o, a.profile, seed, cache, wait=False)   # first train what no other process has claimed
    for held in todo:
        done = pd.read_csv(a.out) if Path(a.out).exists() else pd.DataFrame(columns=['lever', 'seed', 'held_out'])
        if ((done.lever == lever) & (done.seed == seed) & (done.held_out == held)).any(): continue
        preds, info, train, test = stack_loso_fold(sp, held, classes, a.profile, seed, cache, medoids=lever == 'stack_loso_medoid')
        done = pd.read_csv(a.out) if Path(a.out).exists() else pd.DataFrame(columns=['lever', 'seed', 'held_out'])
        if ((done.lever == lever) & (done.seed == seed) & (done.held_out == held)).any(): continue   # another process wrote it meanwhile
        y = label_codes(test, classes)
        for name, (pred, P) in preds.items():
            row = dict(lever=name, protocol='loso', held_out=held, n_train=len(train), n_test=len(test),
                       **scores(y, pred, P, len(classes)), seed=seed, **info)
            row['named_accuracy'], row['n_named'] = named_accuracy(y, pred, classes)
            np.savez(Path(a.runs, f"{name}_s{seed}_{held}.npz"), y=y, pred=pred, classes=np.array(classes))
            row.update(profile=a.profile, hardware=hardware(), commit=commit, date=datetime.datetime.now().isoformat(timespec='seconds'), command=cmd)
            append_row(a.out, row)
            print(f"{name:16s} seed {seed} {held:22s} acc {row['accuracy']:.3f} named {row['named_accuracy']:.3f} {row['wall_s']:.0f}s", flush=True)

def run(a):
    sp, out, commit = load_corpus(), Path(a.out), git_commit()     # the commit whose code this process runs (taken before training)
    cmd = 'python scripts/ablate_loso.py ' + ' '.join(shlex.quote(x) for x in sys.argv[1:])
    for seed in a.seeds:
        for lever in a.levers:
            done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=['lever', 'seed', 'held_out'])
            have = set(done.held_out[(done.lever == lever) & (done.seed == seed)])
            todo = [s for s in a.sources if s not in have]
            if not todo: continue
            kw = LEVERS[lever]
            if kw == 'stack':
                run_stack(a, sp, seed, todo, commit, cmd); continue
            if kw in ('stack_loso', 'stack_loso_medoid'):
                run_stack_loso(a, sp, seed, todo, commit, cmd, kw); continue
            search = {None: DEFAULT_STEPS, 'openspecy': OPEN_SPECY_STEPS}
            clf = search_classifier(search[kw]) if kw in search else cnn_classifier('lenet_1d', a.profile, None, seed, device='cpu', **kw)
            for row in evaluate(clf, sp, 'loso', lever, seed, sources=todo):
                y, pred, classes = row.pop('_y'), row.pop('_pred'), row.pop('_classes'); row.pop('_model')
                row['named_accuracy'], row['n_named'] = named_accuracy(y, pred, classes)
                Path(a.runs).mkdir(parents=True, exist_ok=True)
                np.savez(Path(a.runs, f"{lever}_s{seed}_{row['held_out']}.npz"), y=y, pred=pred, classes=np.array(classes))
                row = dict(lever=lever, **{k: v for k, v in row.items() if k != 'model'}, profile=a.profile if kw not in search else '',
                           hardware=hardware(), commit=commit, date=datetime.datetime.now().isoformat(timespec='seconds'), command=cmd)
                append_row(out, row)
                print(f"{lever:16s} seed {seed} {row['held_out']:22s} acc {row['accuracy']:.3f} named {row['named_accuracy']:.3f} "
                      f"{row['wall_s']:.0f}s", flush=True)

def with_seed_file(df, seeds='results/seeds.csv'):
    """`df` plus the shipped recipe's seed rows from `seeds` (`base_seeds`: lenet_1d, gpu profile, this CPU) for the folds, and in
    the form, the rerun here lacks: all classes always, named polymers where the lab has no unnamed class (then both are equal)."""
    if not Path(seeds).exists(): return df
    s = pd.read_csv(seeds); s = s[(s.protocol == 'loso') & s.seed.isin(df.seed[~df.lever.isin(REFS)])]   # the seeds the levers ran
    n_named = df.groupby('held_out').apply(lambda g: (g.n_named == g.n_test).all(), include_groups=False)
    rows = s.assign(lever='base_seeds', named_accuracy=[a if n_named.get(h, False) else np.nan for a, h in zip(s.accuracy, s.held_out)])
    return pd.concat([df, rows[['lever', 'held_out', 'seed', 'accuracy', 'named_accuracy', 'n_test', 'commit']]], ignore_index=True)

def table(df):
    "Per lever and held-out lab: accuracy (mean over seeds) in both forms, the number of seeds and their spread (sd of the per-seed mean over the labs it ran)."
    rows = []
    for form, col in (('all classes', 'accuracy'), ('named polymers', 'named_accuracy')):
        t = df.groupby(['lever', 'held_out'], sort=False)[col].mean().unstack('held_out')
        t = t.reindex(columns=[s for s in LOSO_SOURCES if s in t.columns])
        per_seed = df.groupby(['lever', 'seed'])[col].mean().groupby('lever')
        t['seeds'], t['sd_seeds'] = per_seed.size(), per_seed.std()
        rows.append(t.assign(form=form).reset_index().set_index(['form', 'lever']))
    return pd.concat(rows).round(3)

def md(t):
    "A markdown table of `t` (index included), NaN as blank."
    t = t.reset_index()
    counts = ('n', 'true', 'seeds')
    cell = lambda c, v: '' if pd.isna(v) else str(int(v)) if c in counts else f'{v:.3f}' if isinstance(v, float) else str(v)
    return '\n'.join(['| ' + ' | '.join(t.columns) + ' |', '|' + ' --- |' * len(t.columns)] +
                      ['| ' + ' | '.join(cell(c, v) for c, v in zip(t.columns, r)) + ' |' for r in t.itertuples(index=False)])

def prose(df, t):
    "What each lever gave (mean over its seeds) on the labs its first seed ran: against the shipped recipe (rerun here, else `base_seeds`) and search DEFAULT."
    out = []
    for lever in [l for l in t.loc['all classes'].index if l not in ('base', 'base_seeds', *REFS)]:
        s0 = df.seed[df.lever == lever].min()
        labs = [h for h in LOSO_SOURCES if ((df.lever == lever) & (df.held_out == h) & (df.seed == s0)).any()]
        for form in ('all classes', 'named polymers'):
            tf = t.loc[form]
            base = lambda h: tf.loc['base', h] if 'base' in tf.index and pd.notna(tf.loc['base', h]) else tf.loc['base_seeds', h] if 'base_seeds' in tf.index else np.nan
            r, b, s = (np.array(v, float) for v in ([tf.loc[lever, h] for h in labs], [base(h) for h in labs], [tf.loc['search_default', h] for h in labs]))
            d = ', '.join(f"{h} {x:.3f} ({f'{x - y:+.3f}' if np.isfinite(y) else 'n/a'} vs base, {x - z:+.3f} vs search)" for h, x, y, z in zip(labs, r, b, s))
            mb = f"{b.mean():.3f}" if np.isfinite(b).all() else 'n/a (a lab lacks the shipped recipe in this form)'
            drop = df[(df.lever == lever) & (df.seed == s0)].set_index('held_out').n_low_signal.reindex(labs)
            dropped = f" (training spectra dropped: {', '.join(f'{int(v)}' for v in drop)})" if form == 'all classes' and drop.fillna(0).gt(0).any() else ''
            out.append(f"- `{lever}` (mean over seeds {sorted(set(df.seed[df.lever == lever]))}), {form}{dropped}: mean over {', '.join(labs)} {r.mean():.3f}, shipped recipe {mb}, search DEFAULT {s.mean():.3f}; per lab {d}.")
    return '\n'.join(out)

STACK_TEXT = {
    'stack': "`stack`: a learned combination of the CNN with library search, fitted inside the training sources only. Their physical samples "
             "are split (`split_groups`, 20%) into a fit part and a calibration part; a lenet_1d trained on the fit part and library search "
             "against the fit part give the calibration spectra's features (CNN log-probabilities, and per class the highest Pearson r of its "
             "references, Fisher z); `stack` is a multinomial logistic regression on those 2k features (standardised, L2 1e-3, class-balanced), "
             "`stack_tied` the two-weight model logit_c = a log p_c + b z_c. The held-out lab is predicted from the CNN trained as the shipped "
             "recipe (all training sources, same seed: `stack_cnn`, that net alone) and library search against all training spectra.",
    'stack_loso': "`stack_loso`: the same two stackers, fitted instead on leave-one-source-out predictions within the training sources: for "
                  "every other LOSO source s, a lenet_1d trained without the held-out lab and s, and library search against the corpus "
                  "without both, predict s; the stackers are fitted on all four such sources' spectra, then applied as in `stack` "
                  "(`stack_loso_cnn` is the fold's CNN alone, the same recipe as `stack_cnn`).",
    'stack_loso_medoid': "`stack_loso_medoid`: `stack_loso` with each class's best r taken against a medoid library of the training spectra "
                         "(chapter 5a's `build_library`, the kind of library the shipped open-set rule carries: a few hundred references) "
                         "instead of every training spectrum, on the same cached nets; the classifier already computes these r for its "
                         "evidence, so this combination would cost nothing at inference. `stack_loso_medoid_ratio` (where present): "
                         "argmax(log p + w z) with the single weight w chosen for accuracy on the inner held-out sources (`fit_ratio`) "
                         "instead of the tied stacker's log-loss."}

def stack_prose(ran, df):
    "What the stack levers are, their calibration figures, their net against the shipped recipe, and on how many labs they reach search DEFAULT."
    out = []
    for lev, text in STACK_TEXT.items():
        st = ran[ran.lever == lev]
        if not len(st): continue
        cal = ', '.join(f"{r.held_out} (n={int(r.n_cal)}: CNN {r.cal_acc_cnn:.3f}, search {r.cal_acc_search:.3f}, {lev} {r.cal_acc_stack:.3f}, "
                        f"{lev}_tied {r.cal_acc_stack_tied:.3f}, tied weights [a, b] = {r.stack_tied_w})" for r in st[st.seed == 0].itertuples())
        out += ['', text + f" Accuracy on the {'calibration part (in-distribution)' if lev == 'stack' else 'inner held-out sources'}, seed 0 (the stackers' "
                       f"figures are on the data they were fitted to): {cal}."]
        rr = st[st.stack_ratio_w.notna()] if 'stack_ratio_w' in st else st.iloc[:0]
        if len(rr): out[-1] += (f" `{lev}_ratio`'s weight w of z and its accuracy on the inner held-out sources it was "
                                "chosen on, beside the CNN's and search's alone on the same spectra: " + ', '.join(f"{r.held_out} seed {r.seed} w = {json.loads(r.stack_ratio_w)[1]:.3g} "
                                f"({r.cal_acc_stack_ratio:.3f}; CNN {r.cal_acc_cnn:.3f}, search {r.cal_acc_search:.3f})" for r in rr.itertuples()) + '.')
        same = ran[ran.lever == f'{lev}_cnn'].merge(df[df.lever.isin(['base', 'base_seeds'])].drop_duplicates(['held_out', 'seed']),
                                                    on=['held_out', 'seed'], suffixes=('', '_b'))
        if len(same): out[-1] += (f" `{lev}_cnn` ({', '.join(sorted(set(same.hardware)))}) against the shipped recipe's own row: " +
                                  ', '.join(f"{r.held_out} seed {r.seed} {r.accuracy:.4f} vs {r.accuracy_b:.4f}" for r in same.itertuples()) + '.')
        for lever in [l for l in (lev, f'{lev}_tied', f'{lev}_ratio') if (df.lever == l).any()]:
            for form, col in (('all classes', 'accuracy'), ('named polymers', 'named_accuracy')):
                m = df.groupby(['lever', 'held_out'])[col].mean()          # unrounded means over seeds
                labs = [h for h in LOSO_SOURCES if (lever, h) in m.index]
                seeds = sorted(set(df.seed[df.lever == lever]))
                for ref, name in (('search_default', 'DEFAULT_STEPS'), ('search_openspecy', 'OPEN_SPECY_STEPS')):
                    if not all((ref, h) in m.index for h in labs): continue
                    d = {h: m[lever, h] - m[ref, h] for h in labs}
                    short = ', '.join(f'{h} ({v:+.3f})' for h, v in d.items() if v < 0)
                    out.append(f"- `{lever}` >= search {name}, {form} (mean over seeds {seeds}): {sum(v >= 0 for v in d.values())} of {len(labs)} labs"
                               + (f"; short on {short}" if short else '') + '.')
    return [*out, ''] if out else []

def spread(ran, seeds='results/seeds.csv'):
    "One sentence: the largest per-lab change a lever made (all classes, seed 0) against the shipped recipe's own spread over seeds."
    if not Path(seeds).exists(): return ''
    s = pd.read_csv(seeds); s = s[s.protocol == 'loso']
    sd = s.groupby('held_out').accuracy.std()
    base = s[s.seed == 0].set_index('held_out').accuracy.combine_first(ran[ran.lever == 'base'].set_index('held_out').accuracy)
    lev = ran[~ran.lever.isin(['base', *REFS]) & (ran.seed == 0)]
    if not len(lev): return ''
    d = (lev.accuracy.to_numpy() - base.reindex(lev.held_out).to_numpy())
    i = int(np.nanargmax(np.abs(d)))
    return (f"Largest per-lab change of any lever against the shipped recipe (all classes, seed 0): {d[i]:+.3f} "
            f"(`{lev.lever.iloc[i]}`, {lev.held_out.iloc[i]}); the shipped recipe's own sd over seeds {sorted(set(s.seed))} per lab "
            f"(`seeds.csv`): " + ', '.join(f"{h} {v:.3f}" for h, v in sd.reindex([h for h in LOSO_SOURCES if h in sd.index]).items()) + '.')

def fold_preds(runs, lever, seed, held_out):
    "(y, pred, classes) saved by `run` for one fold, or None."
    f = Path(runs, f"{lever}_s{seed}_{held_out}.npz")
    if not f.exists(): return None
    z = np.load(f, allow_pickle=False)
    return z['y'], z['pred'], [str(c) for c in z['classes']]

def recall_table(df, runs, held_out, seed=0):
    "Recall per true class (and test support) of every lever that ran fold `held_out` with `seed`, from the saved predictions."
    cols = {}
    for lever in df.lever[(df.held_out == held_out) & (df.seed == seed)].unique():
        fp = fold_preds(runs, lever, seed, held_out)
        if fp is None: continue
        y, pred, classes = fp
        c = pd.Series(np.asarray(classes)[y])
        cols['n'] = c.value_counts()
        cols[lever] = pd.Series(y == pred).groupby(c).mean()
    return pd.DataFrame(cols).round(3).rename_axis('class') if cols else None

def low_signal_predictions(df, runs, held_out, threshold, seed=0):
    "What each lever predicts for the held-out lab's own spectra that score below `threshold`: counts per predicted class."
    from mp_cnn.corpus import load_corpus
    from mp_cnn.recipe import signal_score
    from mp_cnn.augment import split_by_source
    _, test = split_by_source(load_corpus(), held_out)
    low = signal_score(test) < threshold
    out = {}
    for lever in df.lever[(df.held_out == held_out) & (df.seed == seed)].unique():
        fp = fold_preds(runs, lever, seed, held_out)
        if fp is None or len(fp[0]) != len(test): continue      # test restricted to training classes: align only when nothing was removed
        y, pred, classes = fp
        out[lever] = pd.Series(np.asarray(classes)[pred[low]]).value_counts()
    if not out: return None
    t = pd.DataFrame({'true': pd.Series(test.labels.to_numpy()[low]).value_counts(), **out})
    return t.fillna(0).astype(int).rename_axis('class')

def header(ran, df):
    "The section's first paragraph: commands, model, hardware, commits, and the rerun of the shipped recipe against `seeds.csv`."
    same = ran[ran.lever == 'base'].merge(df[df.lever == 'base_seeds'], on=['held_out', 'seed'], suffixes=('', '_s'))
    cnn = ran[~ran.lever.isin(REFS)]
    return (f"`{ran.command.iloc[-1]}` and the other commands in "
            f"`loso_ablation.csv`; lenet_1d, `{cnn.profile.iloc[0] if len(cnn) else ''}` profile, {cnn.hardware.iloc[0] if len(cnn) else ''}, "
            f"commits {', '.join(sorted(set(cnn.commit.str[:7])))}; library search DEFAULT and Open Specy (`search_openspecy`) on the same folds. Named polymers = test spectra "
            "whose true class is neither other_plastic nor non_plastic. `base_seeds` = the shipped recipe's rows in `seeds.csv` (same code path, "
            "this CPU, commit " + ', '.join(sorted(set(df.commit[df.lever == 'base_seeds'].str[:7]))) + "); the rerun here (`base`) matches it on "
            + ', '.join(f"{r.held_out} seed {r.seed} ({r.accuracy:.4f} vs {r.accuracy_s:.4f})" for r in same.itertuples()) + '.')

def quality_line(q):
    "One sentence from `corpus_quality.csv`: how many spectra score below the threshold, and where most of them are."
    low = q[q.below > 0].sort_values('below', ascending=False)
    return (f"Spectral quality (`corpus_quality.csv`, `{q.command.iloc[0]}`): {int(q.below.sum())} of {int(q.spectra.sum())} spectra score below "
            f"{q.threshold.iloc[0]:g}, most in " + ', '.join(f"{r.source} {r.label} ({int(r.below)} of {int(r.spectra)})" for r in low.head(3).itertuples()) + '.')

def readme(path='results/loso_ablation.csv', readme_path='results/README.md', quality='results/corpus_quality.csv', runs='runs/loso_ablation'):
    "Write the LOSO ablation section of results/README.md (between `<!-- loso_ablation -->` markers) from the CSVs: nothing typed."
    ran = pd.read_csv(path)
    df = with_seed_file(ran)
    t = table(df)
    q = pd.read_csv(quality)
    sec = ['## Leave one source out: training levers (`loso_ablation.csv`, issue 12)', '', header(ran, df), '',
           md(t), '', prose(df, t), '', spread(ran), '', *stack_prose(ran, df), quality_line(q)]
    for held in ('villegas_camacho_2024', 'microplastix'):
        r = recall_table(ran, runs, held)
        if r is not None: sec += ['', f"Recall per class, {held} held out (seed 0, from the saved predictions):", '', md(r)]
        t = low_signal_predictions(ran, runs, held, q.threshold.iloc[0])
        if t is not None and len(t): sec += ['', f"{held}'s own spectra scoring below {q.threshold.iloc[0]:g} ({int(t.true.sum())}): `true` = how many carry each label, "
                                             "the other columns = how many each lever predicts as that class:", '', md(t)]
    text = '\n'.join(sec)
    f = Path(readme_path); body = f.read_text()
    if '<!-- loso_ablation -->' in body:
        head, rest = body.split('<!-- loso_ablation -->'); _, tail = rest.split('<!-- /loso_ablation -->')
    else: head, tail = body.rstrip('\n') + '\n\n', '\n'
    f.write_text(head + '<!-- loso_ablation -->\n' + text + '\n<!-- /loso_ablation -->' + tail)
    return text

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--levers', type=lambda s: s.split(','), default=['search_default', 'base'])
    p.add_argument('--seeds', type=lambda s: [int(x) for x in s.split(',')], default=[0])
    p.add_argument('--sources', type=lambda s: s.split(','), default=list(LOSO_SOURCES))
    p.add_argument('--profile', default='gpu')
    p.add_argument('--out', default='results/loso_ablation.csv')
    p.add_argument('--runs', default='runs/loso_ablation')
    p.add_argument('--table', action='store_true', help='print the LOSO table (both forms) from --out')
    p.add_argument('--readme', action='store_true', help="write results/README.md's LOSO ablation section from --out")
    a = p.parse_args(argv)
    if a.table: return print(table(with_seed_file(pd.read_csv(a.out))).to_string())
    if a.readme: return print(readme(a.out, runs=a.runs))
    unknown = set(a.levers) - set(LEVERS)
    if unknown: p.error(f"unknown lever(s) {sorted(unknown)}: choose from {sorted(LEVERS)}")
    run(a)

if __name__ == '__main__': main()
