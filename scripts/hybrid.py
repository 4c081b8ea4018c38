"""CNN with a library-search fallback, measured (chapter 5, "what would close the gap"): lenet_1d (gpu profile, trained on
this CPU, seed 0) answers when its top softmax probability reaches a threshold, library search (DEFAULT pipeline, the
training spectra as library) answers otherwise. The threshold is fixed in advance at the shipped model's rejection
threshold (mp_cnn/pretrained/calibration.json, set on its own calibration groups), never tuned on a test split; the other
thresholds are shown for sensitivity only. One row per (protocol, held-out source, threshold) in results/hybrid.csv.

    MP_CNN_DATA=../shared/data python scripts/hybrid.py
"""
import json, datetime
from pathlib import Path
import numpy as np, pandas as pd
from mp_cnn.corpus import load_corpus
from mp_cnn.preprocess import DEFAULT_STEPS
from mp_cnn.augment import label_codes
from mp_cnn.evaluate import protocol_splits, cnn_classifier, search_classifier, hardware, accuracy
from mp_cnn.checkpoint import git_commit
from mp_cnn.train import macro_f1

ROOT = Path(__file__).resolve().parents[1]
shipped = json.loads((ROOT/'mp_cnn/pretrained/calibration.json').read_text())['threshold']
THRESHOLDS = [0.0, 0.5, round(shipped, 3), 0.7, 0.9, 1.01]            # 0: CNN alone; 1.01: search alone
sp, rows = load_corpus(), []
classes = sorted(sp.labels.astype(str).unique())
cnn, search = cnn_classifier('lenet_1d', 'gpu', seed=0, device='cpu'), search_classifier(DEFAULT_STEPS)
for protocol in ('group', 'loso'):
    for held, train, test in protocol_splits(sp, protocol, seed=0):
        y = label_codes(test, classes)
        pc, P, _ = cnn(train, test, classes)
        ps, *_ = search(train, test, classes)
        for t in THRESHOLDS:
            sure = P.max(1) >= t
            pred = np.where(sure, pc, ps)
            rows.append(dict(protocol=protocol, held_out=held or '', threshold=t, shipped_threshold=t == round(shipped, 3),
                             cnn_share=round(float(sure.mean()), 4), accuracy=accuracy(y, pred), macro_f1=macro_f1(y, pred, len(classes))))
        print(protocol, held or '-', ' '.join(f"t={r['threshold']}: {r['accuracy']:.3f}" for r in rows[-len(THRESHOLDS):]), flush=True)
df = pd.DataFrame(rows).assign(model='lenet_1d', profile='gpu', device='cpu', seed=0, hardware=hardware(), commit=git_commit(),
                                date=datetime.datetime.now().isoformat(timespec='seconds'))
df.to_csv(ROOT/'results/hybrid.csv', index=False)
print(df[df.protocol == 'loso'].groupby('threshold')[['accuracy', 'cnn_share']].mean().round(3).to_string())
