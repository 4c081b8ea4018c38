from pathlib import Path
import numpy as np, pandas as pd, pytest
from mp_cnn.readers import read_spectra, read_many, read_csv
from mp_cnn.formats import ReadError
from mp_cnn.spectra import Spectra


@pytest.fixture(scope='module')
def ext(shared): return shared/'openspecy'/'inst'/'extdata'

def band(s, lo, hi, i=0):
    m = (s.wavenumbers > lo) & (s.wavenumbers < hi)
    return s.wavenumbers[m][np.argmax(s.X[i][m])]

# file -> (reader, n spectra, axis min, axis max, units, raman)
EXPECTED = {
    'CA_tiny_map.zip': ('envi', 208, 717, 4004, 'A', False),
    'fitr_nitrocellulose.jdx': ('jcamp', 1, 600, 7499, 'R', False),
    'ftir_ldpe_soil.asp': ('asp', 1, 650, 3999, 'A', False),
    'ftir_polyethylene_reflectance_adjustment_not_working.spa': ('spa', 1, 650, 4000, '%R', False),
    'ftir_ps.0': ('opus', 1, 399, 4498, 'A', False),
    'ftir_pva_without_header.csv': ('csv', 1, 675, 4000, 'A', False),
    'raman_atacamit.spc': ('spc', 1, 118, 1050, 'A', True),
    'raman_hdpe.csv': ('csv', 1, 301, 3198, 'A', True),
    'raman_hdpe.json': ('openspecy-json', 1, 301, 3198, 'A', True),
    'raman_hdpe.rds': ('openspecy-rds', 1, 301, 3198, 'A', True),
    'raman_hdpe_os.csv': ('csv-wide', 1, 301, 3198, 'A', True),
    'testdata_zipped.zip': ('csv', 3, 301, 3198, 'A', True),
}

@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_real_files(ext, name):
    fmt, n, lo, hi, units, raman = EXPECTED[name]
    s = read_spectra(ext/name)
    assert isinstance(s, Spectra) and len(s) == n
    assert (s.meta.format == fmt).all() and (s.meta.units_published == units).all()
    assert abs(s.wavenumbers[0] - lo) < 1.5 and abs(s.wavenumbers[-1] - hi) < 1.5
    assert np.isfinite(s.X).all()
    assert (s.meta.technique_hint.eq('raman').fillna(False) == raman).all()
    assert {'file', 'spectrum', 'units_published', 'technique_hint', 'x', 'y'} <= set(s.meta.columns)

def test_bands(ext):
    ps, ldpe = read_spectra(ext/'ftir_ps.0'), read_spectra(ext/'ftir_ldpe_soil.asp')
    assert abs(band(ps, 600, 800) - 698) < 4 and abs(band(ps, 730, 780) - 756) < 4
    assert abs(band(ldpe, 2800, 3000) - 2915) < 5 and abs(band(ldpe, 2830, 2870) - 2848) < 5
    assert abs(band(ldpe, 690, 760) - 720) < 5

def test_openspecy_formats_agree(ext):
    a, b, c = (read_spectra(ext/f) for f in ('raman_hdpe.json', 'raman_hdpe.rds', 'raman_hdpe_os.csv'))
    np.testing.assert_allclose(a.X, b.X); np.testing.assert_allclose(a.X, c.X)
    assert b.meta.spectrum_identity[0] == 'HDPE'

def test_map_coordinates(ext):
    m = read_spectra(ext/'CA_tiny_map.zip')
    assert m.meta.x.max() == 15 and m.meta.y.max() == 12 and len(m.meta[['x', 'y']].drop_duplicates()) == 208
    assert np.abs(np.diff(m.X, axis=1)).mean() < 0.05 * m.X.std()   # bip read in the right order: smooth spectra

def test_folder_zip_and_lists(ext, tmp_path):
    s = read_spectra([ext/'raman_hdpe.csv', ext/'testdata_zipped.zip'])
    assert len(s) == 4 and s.meta.file[1].startswith('testdata_zipped.zip/')
    with pytest.raises(ReadError, match='grid='): read_spectra([ext/'ftir_ps.0', ext/'ftir_ldpe_soil.asp'])
    g = read_spectra([ext/'ftir_ps.0', ext/'ftir_ldpe_soil.asp'], grid=np.arange(400, 4001, 4.))
    assert g.X.shape == (2, 901)
    ok, errs = read_many(ext)
    assert len(errs) == 0 and sum(len(o) for o in ok) == 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 3 + 208

W = np.arange(4000, 399, -2.)
Y = np.stack([np.exp(-((W - c) / 15) ** 2) for c in (2915, 1470, 720)])

@pytest.mark.parametrize('name,text,n,peak', [
    ('semi.csv', 'x;y\n' + '\n'.join(f'{w:.1f};{y:.5f}'.replace('.', ',') for w, y in zip(W, Y[0])), 1, 2915),
    ('tab.txt', '\n'.join('\t'.join(f'{v:g}' for v in (w, *y)) for w, *y in zip(W, *Y)), 3, 2915),
    ('space.txt', '# comment\n' + '\n'.join(f'{w:g}  {y:.5f}' for w, y in zip(W, Y[1])), 1, 1470),
    ('space_comma.txt', '\n'.join(f'{w:.1f} {y:.5f}'.replace('.', ',') for w, y in zip(W, Y[2])), 1, 720),
    ('headerless.csv', '\n'.join(f'{w:g},{y:.5f}' for w, y in zip(W, Y[1])), 1, 1470),
    ('multi.csv', 'wn,a,b,c\n' + '\n'.join(','.join(f'{v:g}' for v in (w, *y)) for w, *y in zip(W, *Y)), 3, 2915),
    ('wide.csv', ','.join(f'{w:g}' for w in W) + ',x,y\n' + '\n'.join(','.join(f'{v:.5f}' for v in y) + f',{i},0' for i, y in enumerate(Y)), 3, 2915),
])
def test_csv_variants(tmp_path, name, text, n, peak):
    (tmp_path/name).write_text(text)
    s = read_spectra(tmp_path/name)
    assert len(s) == n and abs(s.wavenumbers[0] - 400) < 1e-6 and abs(s.wavenumbers[-1] - 4000) < 1e-6
    assert abs(band(s, 400, 4000) - peak) < 3
    assert np.isfinite(s.X).all()

def test_units_override_and_guess(tmp_path):
    (tmp_path/'t.csv').write_text('\n'.join(f'{w:g},{100 * 10 ** -y:.4f}' for w, y in zip(W, Y[0])))
    assert read_spectra(tmp_path/'t.csv').meta.units_published[0] == '%T'
    assert read_spectra(tmp_path/'t.csv', units='A').meta.units_published[0] == 'A'
    with pytest.raises(ValueError, match='unknown units'): read_spectra(tmp_path/'t.csv', units='mV')

def test_errors_name_file_and_batch_survives(ext, tmp_path):
    (tmp_path/'notes.txt').write_text('hello\nworld\n')
    (tmp_path/'junk.bin').write_bytes(b'\0\1\2\3' * 10)
    (tmp_path/'bad.spa').write_bytes(b'not a spa')
    for f in ('notes.txt', 'junk.bin', 'bad.spa', 'missing.csv'):
        with pytest.raises(ReadError, match=f.replace('.', r'\.')): read_spectra(tmp_path/f)
    assert issubclass(ReadError, ValueError)
    ok, errs = read_many([ext/'ftir_ps.0', tmp_path/'notes.txt', tmp_path/'junk.bin', tmp_path/'bad.spa'])
    assert len(ok) == 1 and len(errs) == 3 and list(errs.columns) == ['file', 'error']


# --- binary formats of other software (SpectroChemPy's test files: foreign_files/, see its PROVENANCE.md) ------------------------

@pytest.fixture(scope='module')
def foreign(shared): return shared/'foreign_files'

def test_spc_same_numbers_as_spc_spectra(ext):
    "raman_atacamit.spc as spc-spectra 0.4 read it (our reader replaced it; these are its figures: sum, extremes, first values)."
    s = read_spectra(ext/'raman_atacamit.spc')
    assert s.X.shape == (1, 559) and s.meta.format[0] == 'spc'
    np.testing.assert_allclose([s.X[0].sum(), s.X[0].min(), s.X[0].max()], [45521.99993228912, 0.0765995979309082, 585.5099487304688], rtol=1e-6)
    np.testing.assert_allclose(s.X[0, :3], [218.71998596, 236.3999939, 242.03997803], rtol=1e-7)
    np.testing.assert_allclose(s.wavenumbers[[0, 1, -1]], [117.77999115, 119.45063633, 1050.0], rtol=1e-8)

def test_foreign_files_one_row_per_spectrum(foreign):
    ok, errs = read_many(foreign)
    assert [Path(f).name for f in errs.file] == ['SHA256SUMS']      # the hash list is not a spectrum: an error row
    rows = pd.concat([s.meta for s in ok]).groupby('file').size().to_dict()
    assert rows == {'2-BaSO4_0.SPA': 1, '3-SILICA_0.SPA': 1, '4-Z22-Si-C_0.SPA': 1, 'BARBITUATES.SPC': 286, 'BENZENE.SPC': 1, 'CO@Mo_Al2O3.SPG': 19,
                    'DEMO_3D.SPC': 32, 'HCL.SPC': 1, 'IG_BKGND.SPC': 1, 'IG_SAMP.SPC': 1, 'SPECTRUM_WITH_BAD_BASELINE.SPC': 1, 'TUMIX.SPC': 1, 'XYTRACE.SPC': 1}
    for s in ok: assert np.isfinite(s.X).all() and np.isfinite(s.wavenumbers).all()

def test_spg_members(foreign):
    g = read_spectra(foreign/'CO@Mo_Al2O3.SPG')
    assert len(g) == 19 and (g.meta.format == 'spg').all() and (g.meta.units_published == 'A').all()
    assert g.meta.spectrum.str.contains('torr').all() and g.meta.spectrum.nunique() == 19      # each member's own title
    assert abs(g.wavenumbers[0] - 1000) < 1 and abs(g.wavenumbers[-1] - 4000) < 1
    assert np.ptp(g.X, axis=1).min() > 0 and len(np.unique(g.X.sum(1))) == 19                # 19 different spectra

def test_spc_layouts(foreign):
    d3 = read_spectra(foreign/'DEMO_3D.SPC')                    # old format (0x4D), 32 traces on one even axis, in nm
    assert d3.X.shape == (32, 171) and abs(d3.wavenumbers[0] - 1e7 / 800) < 1e-6 and abs(d3.wavenumbers[-1] - 1e7 / 200) < 1e-3
    b = read_many(foreign/'BARBITUATES.SPC')[0]               # XYXY through the directory: an axis per trace
    assert len(b) == 286 and all(s.meta.technique_hint[0] == 'mass spectrum (m/z axis)' for s in b)
    assert 20 < min(s.wavenumbers[0] for s in b) < 30 and 150 < max(s.wavenumbers[-1] for s in b) < 300   # m/z values (26 to 244), not cm-1
    xy = read_spectra(foreign/'XYTRACE.SPC')                    # XY: an X array before the Y
    assert len(xy.wavenumbers) == 3469 and abs(xy.wavenumbers[0] - 1e7 / 870.334) < 0.1
    hcl = read_spectra(foreign/'HCL.SPC')
    assert hcl.meta.units_published[0] == '%T' and abs(np.median(hcl.X) - 95) < 10
    assert read_spectra(foreign/'IG_SAMP.SPC').meta.units_published[0] == 'interferogram'
    assert read_spectra(foreign/'IG_BKGND.SPC').meta.units_published[0] == 'single beam'

def _big_endian(b):
    "A Y-only, single-trace, 32-bit SPC file (new format) rewritten most significant byte first (version 0x4C)."
    import struct
    b = bytearray(b)
    assert b[1] == 0x4B and b[0] & ~0x01 == 0 and b[0] & 1 == 0
    b[1] = 0x4C
    for off, f in [(4, 'I'), (8, 'd'), (16, 'd'), (24, 'I'), (248, 'I'), (514, 'H'), (516, 'f'), (520, 'f'), (524, 'f'), (528, 'I'), (532, 'I'), (536, 'f')]:
        struct.pack_into('>' + f, b, off, *struct.unpack_from('<' + f, b, off))
    n = struct.unpack_from('>I', b, 4)[0]
    b[544:544 + 4 * n] = np.frombuffer(bytes(b[544:544 + 4 * n]), '<i4').astype('>i4').tobytes()
    return bytes(b)

def test_spc_big_endian(foreign, tmp_path):
    (tmp_path/'be.spc').write_bytes(_big_endian((foreign/'BENZENE.SPC').read_bytes()))
    a, b = read_spectra(foreign/'BENZENE.SPC'), read_spectra(tmp_path/'be.spc')
    np.testing.assert_array_equal(a.X, b.X); np.testing.assert_array_equal(a.wavenumbers, b.wavenumbers)
