"""Identify microplastic particles from their infrared spectra with CNNs trained on pooled public spectra, measured honestly against library search.

Modules:

- `mp_cnn.classify`: A pretrained model shipped inside the package that labels any mid-IR spectrum file in one command, says when a spectrum is not confidently any known polymer, and refuses input it was never meant to see (Raman, NIR, empty or truncated spectra).
- `mp_cnn.openset`: Every answer shows the reference spectrum that supports it and its correlation (HQI), and a spectrum like nothing the model was trained on (a mineral, a gas, a blank) is flagged unknown instead of getting a polymer label."""

__version__ = "0.0.1"
