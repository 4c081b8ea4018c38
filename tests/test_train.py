"Trainer, checkpoints, resume, DDP on CPU and the `mp-cnn train` command, on problems small enough for seconds each."
import os, socket, subprocess, sys, textwrap
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from safetensors.torch import load_file

from mp_cnn.models import MODEL_NAMES, get_model
from mp_cnn.train import Trainer, macro_f1, predict_logits, PROFILES, profile_model
from mp_cnn.checkpoint import save_checkpoint, load_checkpoint, checkpoint_grid
import mp_cnn.train
from mp_cnn.cli import main


def toy(n=64, length=64, k=3, seed=0):
    g = np.random.default_rng(seed)
    y = g.integers(0, k, n)
    x = np.arange(length)
    X = np.exp(-0.5 * ((x - length * (y[:, None] + 1) / (k + 1)) / 3) ** 2) + 0.3 * g.standard_normal((n, length))
    return X.astype(np.float32), y


def test_macro_f1_matches_hand_computation():
    t, p = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    f = [2 * 2 / (2 * 2 + 0 + 1), 2 * 1 / (2 * 1 + 1 + 1), 2 * 1 / (2 * 1 + 1 + 0)]
    assert macro_f1(t, p) == pytest.approx(np.mean(f))
    assert macro_f1([0, 1], [0, 1], n_classes=10) == 1.0
    assert macro_f1(torch.tensor([3, 3]), torch.tensor([3, 1])) == pytest.approx((2 / 3 + 0) / 2)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_models_train_one_step_and_round_trip(name, tmp_path):
    torch.manual_seed(0)
    m = profile_model(name, 3, 838, 'cpu')
    X, y = toy(16, 838)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    tr = Trainer(m, (X, y), bs=16, verbose=0)
    tr.fit(1)
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())
    save_checkpoint(tmp_path, m, ['a', 'b', 'c'], np.arange(650., 4000., 4.), [{'step': 'x'}], {'f1': np.float32(0.5)}, dict(seed=0))
    m2, cfg = load_checkpoint(tmp_path)
    assert not m2.training and cfg['classes'] == ['a', 'b', 'c'] and cfg['seed'] == 0
    assert np.array_equal(checkpoint_grid(cfg), np.arange(650., 4000., 4.))
    assert torch.equal(predict_logits(m, X[:4]), predict_logits(m2, X[:4]))


def test_checkpoint_functions_are_reexported_by_train():
    "Chapter 6 imports them from `mp_cnn.train` until it switches to `mp_cnn.checkpoint`."
    assert (mp_cnn.train.save_checkpoint, mp_cnn.train.load_checkpoint, mp_cnn.train.checkpoint_grid) == \
           (save_checkpoint, load_checkpoint, checkpoint_grid)


def test_predict_logits_restores_mode_and_matches_forward():
    torch.manual_seed(0)
    m = get_model('alexnet_1d', 3, length=64, width=0.1)        # dropout: eval mode matters
    X = toy(8)[0]
    out = predict_logits(m, X, bs=3)
    assert m.training and out.shape == (8, 3) and out.dtype == torch.float32
    m.eval()
    with torch.no_grad(): assert torch.allclose(out, m(torch.as_tensor(X)), atol=1e-6)


def _run(seed=0, out=None, stop=None, resume=None, epochs=4):
    torch.manual_seed(seed)
    m = get_model('alexnet_1d', 3, length=64, width=0.1)
    Trainer(m, toy(), toy(32, seed=1), bs=16, seed=seed, out=out, verbose=0).fit(
        epochs, resume=resume, cb=lambda t, row: row['epoch'] == stop)
    return m.state_dict()


def _same(a, b): return all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights():
    assert _same(_run(3, epochs=2), _run(3, epochs=2))
    assert not _same(_run(3, epochs=2), _run(4, epochs=2))


def test_resume_matches_uninterrupted(tmp_path):
    whole = _run(out=tmp_path/'a')
    _run(out=tmp_path/'b', stop=2)
    st = torch.load(tmp_path/'b'/'resume.pt', weights_only=True)
    assert st['epoch'] == 2
    resumed = _run(out=tmp_path/'b', resume=tmp_path/'b'/'resume.pt')
    assert _same(whole, resumed)
    assert len(pd.read_csv(tmp_path/'b'/'metrics.csv')) == 4


def test_lr_find_restores_weights():
    torch.manual_seed(0)
    m = get_model('lenet_1d', 3, length=64, width=0.25)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = Trainer(m, toy(), bs=16, verbose=0).lr_find(n=20)
    assert len(r['lrs']) == len(r['losses']) and r['suggestion'] > 0
    assert _same(before, m.state_dict())


DDP_SCRIPT = textwrap.dedent('''
    import sys, numpy as np, torch
    from safetensors.torch import save_file
    from mp_cnn.models import get_model
    from mp_cnn.train import Trainer, dist_env
    g = np.random.default_rng(0); X = g.standard_normal((64, 64)).astype(np.float32); y = g.integers(0, 3, 64)
    torch.manual_seed(0)
    m = get_model('lenet_1d', 3, length=64, width=0.25)
    tr = Trainer(m, (X, y), (X[:16], y[:16]), bs=8, verbose=0)
    assert tr.world == 2
    tr.fit(2)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f"{sys.argv[1]}/rank{dist_env()[0]}.safetensors")
    torch.distributed.destroy_process_group()
''')


def test_ddp_two_cpu_processes_agree(tmp_path):
    (tmp_path/'ddp.py').write_text(DDP_SCRIPT)
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--nnodes', '1',
                        '--master_addr', '127.0.0.1', '--master_port', str(port), str(tmp_path/'ddp.py'), str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_file(tmp_path/'rank0.safetensors'), load_file(tmp_path/'rank1.safetensors')
    assert _same(a, b)


def test_cli_train_tiny(tmp_path, shared, capsys):
    out = tmp_path/'run'
    assert main(['train', '--model', 'lenet_1d', '--profile', 'tiny', '--out', str(out), '--epochs', '2', '--seed', '1']) == 0
    assert 'epoch 2/2' in capsys.readouterr().out
    assert {'model.safetensors', 'config.json', 'metrics.csv', 'resume.pt'} <= set(os.listdir(out))
    m, cfg = load_checkpoint(out)
    assert cfg['train']['profile'] == 'tiny' and cfg['seed'] == 1 and len(cfg['classes']) == m.config['n_classes']
    assert 0 <= cfg['metrics']['macro_f1'] <= 1 and cfg['preprocess']
    assert len(pd.read_csv(out/'metrics.csv')) == 2


def test_cli_dispatch(capsys):
    assert main([]) == 0 and 'train' in capsys.readouterr().out
    assert main(['nope']) == 2
    r = subprocess.run(['mp-cnn', 'train', '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and '--held-out' in r.stdout


def test_chapter4_gpu_training_times_match_results():
    "Chapter 4's prose quotes the group-split training times of results/gpu.csv: recomputed here so that a rerun cannot leave them stale."
    import json, re
    root = Path(__file__).resolve().parents[1]
    text = ' '.join(' '.join(''.join(c['source']) for c in json.loads((root/'nbs/04_train.ipynb').read_text())['cells']
                             if c['cell_type'] == 'markdown').split())
    g = pd.read_csv(root/'results/gpu.csv')
    t = g[g.protocol == 'group'].set_index('model').train_s
    span = lambda ms: f"{min(t[m] for m in ms):.0f}-{max(t[m] for m in ms):.0f}" if len({round(t[m]) for m in ms}) > 1 else f"{t[ms[0]]:.0f}"
    grp = g[g.protocol == 'group']
    assert grp.epochs.nunique() == 1 and grp.n_fit.nunique() == 1                  # one recipe for every CNN
    assert f"(views, {int(grp.epochs.iloc[0])} epochs of {int(grp.n_fit.iloc[0]):,} spectra)" in text
    claim = (f"{span(['lenet_1d', 'lenet_2d'])} s for the LeNets, {span(['alexnet_1d', 'alexnet_2d', 'resnet34_2d'])} s for the AlexNets and "
             f"resnet34_2d, {span(['resnet34_1d'])} s for resnet34_1d, {span(['vgg16_1d', 'vgg16_2d'])} s for the VGGs")
    assert claim in text, claim


def _bands(wn, centres, height, noise, n, seed=0):
    "n absorbance spectra: Gaussian bands of `height` at `centres` plus white noise of sd `noise`."
    g = np.random.default_rng(seed)
    x = sum(height * np.exp(-0.5 * ((wn - c) / 15) ** 2) for c in centres)
    return x + noise * g.standard_normal((n, len(wn)))


def test_signal_score_orders_band_height_over_noise():
    from mp_cnn.spectra import Spectra
    from mp_cnn.augment import atmosphere_bands
    from mp_cnn.recipe import signal_score
    wn = np.arange(650., 4000., 2.)
    clean, noisy = _bands(wn, (720, 1470, 2850, 2920), 0.5, 1e-3, 3), _bands(wn, (720, 1470, 2850, 2920), 0.5, 1e-2, 3)
    blank = 0.01 * atmosphere_bands(wn)[1] + 1e-4 * np.random.default_rng(1).standard_normal((3, len(wn)))
    c, n, b = (signal_score(Spectra(wn, X)) for X in (clean, noisy, blank))
    assert c.min() > 3 * n.max() and n.min() > 15 > 5 > b.max()      # vapour lines outside the bands: no signal, only noise
    out_of_bands = _bands(wn, (1600,), 0.5, 1e-3, 2)                 # a band only where vapour lines live does not count
    assert signal_score(Spectra(wn, out_of_bands)).max() < 15


def test_min_signal_drops_training_spectra_and_counts_them():
    from mp_cnn.spectra import Spectra
    from mp_cnn.recipe import training_data, signal_score
    from mp_cnn.preprocess import Pipeline, DEFAULT_STEPS
    wn = np.arange(650., 4000., 4.)
    X = np.r_[_bands(wn, (720, 2920), 0.5, 1e-3, 6), 1e-3 * np.random.default_rng(2).standard_normal((4, len(wn)))]
    meta = pd.DataFrame(dict(label=['PE'] * 8 + ['PP'] * 2, raw_label=['PE'] * 8 + ['PP'] * 2, source=['a'] * 5 + ['b'] * 5, sample_id=[f's{i}' for i in range(10)]))
    sp = Spectra(wn, X, meta)
    hp = {**PROFILES['tiny'], 'balance': None, 'views': 1}
    ds, tr = training_data(sp, ['PE', 'PP'], Pipeline.from_config(DEFAULT_STEPS), hp, min_signal=15)
    assert len(tr) == 6 and (signal_score(tr) >= 15).all()
    assert tr.drops.set_index(['source', 'label']).spectra.to_dict() == {('b', 'PE'): 2, ('b', 'PP'): 2}
    assert training_data(sp, ['PE', 'PP'], Pipeline.from_config(DEFAULT_STEPS), hp)[1].drops.empty


def test_source_balance_weighs_sources_equally_within_a_class():
    from mp_cnn.spectra import Spectra
    from mp_cnn.recipe import source_balance
    meta = pd.DataFrame(dict(label=['PE'] * 12 + ['PP'] * 4, source=['a'] * 10 + ['b'] * 2 + ['a'] * 4, sample_id=[str(i) for i in range(16)]))
    sb = source_balance(Spectra(np.arange(5.), np.zeros((16, 5)), meta), seed=0, max_repeat=5)
    n = sb.meta.groupby(['label', 'source']).size().to_dict()
    assert n == {('PE', 'a'): 6, ('PE', 'b'): 6, ('PP', 'a'): 4}
    capped = source_balance(Spectra(np.arange(5.), np.zeros((16, 5)), meta), seed=0, max_repeat=2)
    assert capped.meta.groupby(['label', 'source']).size()[('PE', 'b')] == 4


def test_chapter4_prose_corpus_counts(shared):
    "Chapter 4's example of an unbalanced corpus: the polyurethanes and polyethylenes it names, counted."
    from mp_cnn.corpus import load_corpus
    from test_evaluate import _prose
    c = load_corpus(data_dir=shared).labels.value_counts()
    claim = f"Macro-F1 weighs the {c['PU']:,} polyurethanes as much as the {c['PE']:,} polyethylenes"
    assert claim in _prose('04_train') and c.idxmax() == 'PE', claim
