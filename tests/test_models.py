"Properties of the models and image encodings over random inputs, lengths and configs."
import io, json

import pytest
import torch
from hypothesis import given, settings, strategies as st

from mp_cnn.models import GAF, ENCODINGS, MIN_IMAGE_SIZE, MODEL_NAMES, get_encoder, get_model

_spectra = st.tuples(st.integers(1, 4), st.integers(64, 1200), st.integers(0, 2**31 - 1)).map(
    lambda t: torch.rand(t[0], t[1], generator=torch.Generator().manual_seed(t[2])))


@settings(max_examples=40, deadline=None)
@given(_spectra, st.integers(8, 48), st.floats(0.5, 50), st.floats(-5, 5))
def test_gaf_is_symmetric_bounded_and_scale_free(x, size, a, b):
    gs, gd = GAF(size)(x), GAF(size, 'difference')(x)
    assert gs.shape == gd.shape == (x.shape[0], 1, size, size)
    assert torch.allclose(gs, gs.transpose(-1, -2), atol=1e-6)
    assert torch.allclose(gd, -gd.transpose(-1, -2), atol=1e-6)
    assert gs.abs().max() <= 1 + 1e-5 and gd.abs().max() <= 1 + 1e-5
    assert torch.allclose(GAF(size)(a * x + b), gs, atol=5e-3)  # float32: offset b costs a few ulps near |cos| = 1


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.integers(4, 40), st.sampled_from(ENCODINGS))
def test_encoders_give_square_images_for_any_length(length, size, enc):
    img = get_encoder(enc, size)(torch.rand(2, 1, length))
    assert img.shape == (2, 1, size, size) and torch.isfinite(img).all()


@settings(max_examples=24, deadline=None)
@given(st.sampled_from(MODEL_NAMES), st.integers(1, 3), st.integers(300, 1200), st.integers(2, 20),
       st.sampled_from(ENCODINGS), st.sampled_from([None, MIN_IMAGE_SIZE, 40]), st.sampled_from([0.1, 0.25]))
def test_models_any_length_and_config_round_trip(name, batch, length, n_classes, enc, size, width):
    m = get_model(name, n_classes, length=length, width=width, encoding=enc, image_size=size).eval()
    x = torch.rand(batch, length)
    x[:, : length // 10] = 0  # unmeasured region
    with torch.no_grad(): y = m(x)
    assert y.shape == (batch, n_classes) and torch.isfinite(y).all()
    buf = io.BytesIO(); torch.save(m.state_dict(), buf); buf.seek(0)
    m2 = get_model(**json.loads(json.dumps(m.config)))
    m2.load_state_dict(torch.load(buf, weights_only=True)); m2.eval()
    with torch.no_grad(): assert torch.equal(m2(x[:, None]), y)


def test_bad_names_fail():
    with pytest.raises(ValueError): get_model('resnet50_1d', 3)
    with pytest.raises(ValueError): get_encoder('mtf')
    with pytest.raises(ValueError): get_model('alexnet_2d', 3, image_size=MIN_IMAGE_SIZE - 1)
    with pytest.raises(ValueError): get_model('lenet_1d', 3)(torch.rand(2, 3, 100))


def test_chapter3_prose_quotes_the_table():
    "Chapter 3's prose on the table: the 1-D LeNet's multiply-adds (recomputed), and, from the stored table, that it alone clears the bar and that the small nets reach the lowest rate."
    from test_evaluate import _prose, _outputs
    from mp_cnn.models import count_macs
    macs = [count_macs(get_model('lenet_1d', 12, width=w)) / 1e6 for w in (.25, 1.)]
    claim = f"Only the 1D LeNet ({min(macs):.2f}–{max(macs):.2f} M multiply-adds per spectrum) clears the bar, at either width"
    assert claim in _prose('03_models'), claim
    rows = [l.split() for l in _outputs('4afd54d8', '03_models').splitlines() if l.split()[-1:] in (['True'], ['False'])]
    assert {(r[1], r[2]) for r in rows if r[-1] == 'True'} == {('lenet_1d', '0.25'), ('lenet_1d', '1.00')}, rows
    rate = {l.split()[0]: list(map(float, l.split()[1:])) for l in _outputs('ratecol1', '03_models').splitlines()[2:]}
    small, big = [rate[m] for m in rate if m.startswith('lenet')], [rate[m] for m in rate if not m.startswith('lenet')]
    assert all(max(s[w] for s in small) < min(b[w] for b in big) for w in (0, 1)), rate   # "far fewer multiply-adds per second than the big ones"
