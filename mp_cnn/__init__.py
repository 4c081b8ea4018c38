"""Identify microplastic particles from their infrared spectra with CNNs trained on pooled public spectra, measured honestly against library search.

Modules:

- `mp_cnn.checkpoint`: Save and load trained models as a folder of safetensors weights plus a JSON config (model, classes, wavenumber grid, preprocessing, metrics, versions): nothing pickled. The trainer (chapter 4) writes checkpoints and the classifier (chapter 6) reads them; both import this small module, so loading a model never imports the trainer.
- `mp_cnn.classify`: A pretrained model shipped inside the package that labels any mid-IR spectrum file in one command, says when a spectrum is not confidently any known polymer, and refuses input it was never meant to see (Raman, NIR, empty or truncated spectra).
- `mp_cnn.openset`: Every answer shows the reference spectrum that supports it and its correlation (HQI), and a spectrum like nothing the model was trained on (a mineral, a gas, a blank) is flagged unknown instead of getting a polymer label.
- `mp_cnn.train`: One plain-PyTorch trainer for all eight CNNs, on a laptop CPU, an Apple GPU or several CUDA GPUs, that leaves behind a checkpoint (chapter 3a) which needs nothing pickled to load. Also the hardware profiles, the corpus recipe chapter 5 evaluates (`training_data`), the shared metrics and the `mp-cnn train` command."""

__version__ = "0.0.1"
