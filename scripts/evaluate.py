"""Reproduce the evaluation table (chapter 5) in one command; one CSV row per (model, protocol, held-out source), appended
as soon as it finishes, so a partial run keeps what it has and a rerun skips rows already there.

    MP_CNN_DATA=/work/shared/data python scripts/evaluate.py --profile cpu \
        --models search_openspecy,search_default,knn,logreg,lenet_1d,lenet_2d --protocols leaky,group,loso --out results/cpu.csv
    python scripts/evaluate.py --speed --out results/cpu.csv          # results/speed.csv: CNNs vs library search, 10,000 queries
    python scripts/evaluate.py --summary --out results/cpu.csv        # results/summary.csv from results/cpu.csv
    scripts/evaluate_gpu.sh CORPUS OUT                                # the gpu profile on a GPU box, then:
    python scripts/evaluate.py --merge OUT/gpu_*.csv --out results/gpu.csv; python scripts/evaluate.py --summary --out results/gpu.csv

CNNs trained on the `group` protocol are saved to runs/eval/<model>_group (git-ignored); chapter 5 analyses lenet_1d's.
"""
import argparse, datetime
from pathlib import Path
import numpy as np, pandas as pd, torch

from mp_cnn.spectra import Spectra
from mp_cnn.corpus import load_corpus   # also gives Spectra.save/Spectra.load
from mp_cnn.preprocess import OPEN_SPECY_STEPS, DEFAULT_STEPS
from mp_cnn.augment import split_groups
from mp_cnn.models import MODEL_NAMES, time_steps
from mp_cnn.checkpoint import save_checkpoint, git_commit
from mp_cnn.train import PROFILES, profile_model
from mp_cnn.evaluate import (evaluate, search_classifier, knn_classifier, logreg_classifier, cnn_classifier, hardware,
                             speed_table, summarise, BASELINES, PROTOCOLS, LOSO_SOURCES)

def classifier(name, profile, epochs, seed, protocol, device=None):
    if name == 'search_openspecy': return search_classifier(OPEN_SPECY_STEPS)
    if name == 'search_default': return search_classifier(DEFAULT_STEPS)
    if name == 'knn': return knn_classifier()
    if name == 'logreg': return logreg_classifier(seed=seed)
    return cnn_classifier(name, profile, epochs, seed, rebalance=protocol != 'leaky', device=device)   # leaky: balanced before the split

def run(a):
    sp, out = corpus(a), Path(a.out)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=['model', 'protocol', 'held_out', 'epochs', 'seed'])
    base = dict(profile=a.profile, hardware=hardware(), commit=git_commit())
    for m in a.models.split(','):
        for p in a.protocols.split(','):
            ep = (a.epochs or PROFILES[a.profile]['epochs']) if m not in BASELINES else 0
            prev = done[(done.model == m) & (done.protocol == p) & (done.seed.astype(str) == str(a.seed))] if len(done) else done
            for row in evaluate(classifier(m, a.profile, ep, a.seed, p, a.device), sp, p, m, a.seed, PROFILES[a.profile]['balance'] or 300,
                                sources=[s for s in a.sources.split(',') if not (prev.held_out.astype(str) == s).any()] if p == 'loso' else None,
                                **base) if not (p != 'loso' and len(prev)) else []:
                net, classes = row.pop('_model'), row.pop('_classes')
                y, pred = row.pop('_y'), row.pop('_pred')
                if net is not None and row.get('device', 'cpu') == 'cpu':     # a GPU run's speed is --speed's job, not a CPU timing here
                    X = torch.randn(512, net.config['length']); net.eval()
                    with torch.inference_mode(): times = time_steps(lambda: net(X), seconds=0, warmup=1, min_calls=4)   # 4 batches of 512
                    row['infer_sps'] = round(512 / times.mean())
                if net is not None and p == 'group':
                    save_checkpoint(Path(a.runs)/f'{m}_group', net, classes, sp.wavenumbers, DEFAULT_STEPS,
                                    dict(accuracy=row['accuracy'], macro_f1=row['macro_f1']), dict(model=m, profile=a.profile, epochs=ep, seed=a.seed))
                Path(a.runs, 'preds').mkdir(parents=True, exist_ok=True)
                np.savez(Path(a.runs, 'preds', f"{m}_{p}_{row['held_out'] or 'all'}.npz"), y=y, pred=pred, classes=np.array(classes))
                row['epochs'] = ep or ''
                row['date'] = datetime.datetime.now().isoformat(timespec='seconds')
                df = pd.concat([pd.read_csv(out), pd.DataFrame([row])]) if out.exists() else pd.DataFrame([row])
                out.parent.mkdir(parents=True, exist_ok=True)
                df.to_csv(out, index=False)
                print(f"{m:18s} {p:6s} {row['held_out']:22s} acc {row['accuracy']:.3f} F1 {row['macro_f1']:.3f} {row['wall_s']:.0f}s", flush=True)

def corpus(a):
    "The corpus: built from the data files (`load_corpus`), or one that `Spectra.save` wrote (`--corpus`, e.g. on a GPU box without them)."
    return Spectra.load(a.corpus) if a.corpus else load_corpus()

def speed(a):
    sp = corpus(a)
    train, _ = split_groups(sp, 0.2, a.seed)
    q = sp[np.random.default_rng(a.seed).choice(len(sp), 10_000, replace=True)]
    models = {}
    for m in a.models.split(','):
        if m in BASELINES: continue
        torch.manual_seed(a.seed)
        models[m] = profile_model(m, sp.labels.nunique(), len(sp.wavenumbers), a.profile).to(a.device or 'cpu')
    df = speed_table(models, train, q, a.profile, a.bs)
    df['device'] = [(a.device or 'cpu') if m in models else 'cpu' for m in df.method]
    df['hardware'], df['profile'], df['commit'], df['seed'], df['bs'] = hardware(), a.profile, git_commit(), a.seed, a.bs
    df.round(3).to_csv(Path(a.out).parent/(a.speed_out or 'speed.csv'), index=False)
    print(df[['method', 'spectra_per_s', 'spectra_per_s_with_prep', 'x_search_default', 'x_search_openspecy', 'peak_mb']].round(2).to_string(index=False))

def merge(a):
    "One row per (model, protocol, held-out source) from `a.merge` (and seed; the first file that has it wins), appended to `a.out`."
    out = Path(a.out)
    df = pd.concat(([pd.read_csv(out)] if out.exists() else []) + [pd.read_csv(f) for f in a.merge])
    df = df.drop_duplicates(['model', 'protocol', 'held_out', 'seed'], keep='first')
    df.to_csv(out, index=False)
    print(df.groupby(['model', 'protocol'], sort=False).size().to_string())

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--profile', default='cpu', choices=list(PROFILES))
    p.add_argument('--models', default=','.join(list(BASELINES) + list(MODEL_NAMES)))
    p.add_argument('--protocols', default=','.join(PROTOCOLS))
    p.add_argument('--sources', default=','.join(LOSO_SOURCES))
    p.add_argument('--epochs', type=int, help="override the profile's epochs (a shorter 'cpu-eval' setting)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--corpus', help='a corpus written by Spectra.save (path without suffix; see mp_cnn.corpus) instead of load_corpus()')
    p.add_argument('--device', help="where CNNs train and, with --speed, infer (default: a GPU if there is one, else the CPU)")
    p.add_argument('--bs', type=int, default=512, help='inference batch size for --speed')
    p.add_argument('--speed-out', help='file name for --speed (default speed.csv beside --out)')
    p.add_argument('--out', default='results/cpu.csv')
    p.add_argument('--runs', default='runs/eval')
    p.add_argument('--speed', action='store_true'); p.add_argument('--summary', action='store_true')
    p.add_argument('--merge', nargs='+', help='CSVs of parallel or resumed runs (scripts/evaluate_gpu.sh) to merge into --out, one row per split')
    a = p.parse_args(argv)
    if a.speed: return speed(a)
    if a.merge: return merge(a)
    if a.summary:
        stem = Path(a.out).stem
        s = summarise(pd.read_csv(a.out)); s.to_csv(Path(a.out).parent/f"summary{'' if stem == 'cpu' else '_' + stem}.csv", index=False)
        print(s.to_string(index=False)); return
    run(a)

if __name__ == '__main__': main()
