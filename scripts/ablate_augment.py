"""Augmentation ablation for the trainer's default (chapter 2): the 1-D LeNet, cpu profile, seed 0, on the group split
(with accuracy under SNR 10/30/100 noise and truncation below 1250/750 cm-1) and leave-one-source-out. Prints one line per split.

    MP_CNN_DATA=../shared/data python scripts/ablate_augment.py NAME VIEWS [MAGNITUDES_JSON [PROBABILITIES_JSON [PROTOCOLS]]]
    python scripts/ablate_augment.py A 1 '{"add_noise": 0.01}' '{"truncate": 0.15}' group    # before: one view, 1% noise, 15% truncated
    python scripts/ablate_augment.py B 4 '{"add_noise": 0.01}' '{"truncate": 0.15}'          # four views (mp_cnn.datasets.ViewsDataset), same augmentation
    python scripts/ablate_augment.py C 4                                                      # four views, today's defaults (3% noise, 30% truncated)
    python scripts/ablate_augment.py D 4 '{"add_noise": 0.1}'                                 # noise to SNR 10: measured, not adopted
"""
import sys, json, numpy as np
from mp_cnn.corpus import load_corpus
from mp_cnn.augment import split_groups, label_codes
from mp_cnn.evaluate import cnn_classifier, evaluate, perturbed, preprocessed
from mp_cnn.train import predict_logits
from mp_cnn.preprocess import DEFAULT_STEPS

name, views = sys.argv[1], int(sys.argv[2])
magnitudes = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None         # overrides of augment.MAGNITUDES
probabilities = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None      # overrides of augment.PROBABILITIES
protocols = sys.argv[5].split(',') if len(sys.argv) > 5 else ['group', 'loso']
sp = load_corpus()
clf = cnn_classifier('lenet_1d', 'cpu', views=views, device='cpu', magnitudes=magnitudes, probabilities=probabilities)
for p in protocols:
    accs = []
    for row in evaluate(clf, sp, p, 'lenet_1d'):
        line = f"{name} {p} {row['held_out'] or '-'} acc {row['accuracy']:.3f} f1 {row['macro_f1']:.3f} {row['wall_s']}s"
        if p == 'group':
            _, te = split_groups(sp, 0.2, 0); net = row['_model']; y = label_codes(te, row['_classes'])
            for kind, v in [('snr', 10), ('snr', 30), ('snr', 100), ('low', 1250), ('low', 750)]:
                pr = predict_logits(net, preprocessed(DEFAULT_STEPS, perturbed(te, kind, v))).argmax(1).numpy()
                line += f" {kind}{v} {(pr == y).mean():.3f}"
        accs.append(row['accuracy']); print(line, flush=True)
    print(f"{name} {p} MEAN {np.mean(accs):.3f}", flush=True)
