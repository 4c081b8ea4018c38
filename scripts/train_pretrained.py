"""Reproduce the model shipped in mp_cnn/pretrained/ in one command (a few minutes on 2 CPU cores):

    MP_CNN_DATA=../shared/data python scripts/train_pretrained.py [--out mp_cnn/pretrained]

lenet_1d, `gpu` profile (full width, 1,000 spectra per class, four augmented views, up to 40 epochs: the setting that scored
best leaving one source out in results/gpu.csv; small enough to train on a CPU), seed 0, trained on the corpus minus 15% of
its physical groups, which calibrate the rejection threshold and the conformal scores (see nbs/06b_shipped.ipynb). `fit_default`
then builds the open-set rule and its reference library (nbs/05a_openset.ipynb) for the new model from the same two parts.
"""
import argparse
from pathlib import Path
from mp_cnn.classify import pretrained_dir
from mp_cnn.shipped import fit_default

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--out', default=str(pretrained_dir())); p.add_argument('--seed', type=int, default=0)
p.add_argument('--epochs', type=int, help="default: the profile's"); p.add_argument('--calib-size', type=float, default=0.15)
p.add_argument('--profile', default='gpu'); p.add_argument('--model', default='lenet_1d')
a = p.parse_args()
out = Path(a.out)
for f in ('model.safetensors', 'config.json', 'calibration.json', 'metrics.csv', 'resume.pt', 'library.safetensors', 'library.json',
          'openset.safetensors', 'openset.json'):
    (out/f).unlink(missing_ok=True)
clf = fit_default(out, seed=a.seed, epochs=a.epochs, calib_size=a.calib_size, profile=a.profile, model=a.model)
for f in ('metrics.csv', 'resume.pt'): (out/f).unlink(missing_ok=True)   # ship the model, its config, calibration, rule and library
print(clf.rule)
print(clf, '| calibration:', {k: clf.calibration[k] for k in ('n', 'accuracy', 'threshold')}, '| valid:', clf.config['metrics'])
print('wrote', sorted(p.name for p in out.iterdir()))
