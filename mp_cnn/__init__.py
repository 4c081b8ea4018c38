"""Identify microplastic particles from their infrared spectra with CNNs trained on pooled public spectra, measured honestly against library search.

Modules:

- `mp_cnn.augment`: Split first, augment second: leak-free splits (by physical sample, or by lab) and physically grounded variants of a spectrum (noise, baseline, intensity, band shift and width, ATR depth, truncated range, atmosphere, biofilm, cellulose and water), chained in a physical order by one `Augmenter`. Chapter 2a turns them into balanced training sets, so that no test sample leaks into training.
- `mp_cnn.checkpoint`: Save and load trained models as a folder of safetensors weights plus a JSON config (model, classes, wavenumber grid, preprocessing, metrics, versions): nothing pickled. The trainer (chapter 4) writes checkpoints and the classifier (chapter 6) reads them; both import this small module, so loading a model never imports the trainer.
- `mp_cnn.classify`: A pretrained model shipped inside the package that labels any mid-IR spectrum file in one command, says when a spectrum is not confidently any known polymer, and refuses input it was never meant to see (Raman, NIR, empty or truncated spectra).
- `mp_cnn.datasets`: Chapter 2's augmentations turned into training sets: every class brought to the same size with augmented copies of its own spectra, and torch datasets that show the network fresh variants, or a fixed set of augmented views, each epoch. Also the leaky augment-then-split protocol, kept only so that chapter 5 can measure how much it flatters the scores.
- `mp_cnn.openset`: Every answer shows the reference spectrum that supports it and its correlation (HQI), and a spectrum like nothing the model was trained on (a mineral, a gas, a blank) is flagged unknown instead of getting a polymer label.
- `mp_cnn.recipe`: `fit_corpus`, the one recipe behind every shipped and evaluated model: the corpus preprocessed, split by physical sample or by lab, balanced and augmented in views, trained with chapter 4's `Trainer` and checkpointed. Also its quality levers (`signal_score`, `source_balance`), the training set chapter 5 evaluates (`training_data`) and the `mp-cnn train` command.
- `mp_cnn.train`: One plain-PyTorch trainer for all eight CNNs, on a laptop CPU, an Apple GPU or several CUDA GPUs, that leaves behind a checkpoint (chapter 3a) which needs nothing pickled to load. Also the hardware profiles, the shared metrics and the training throughput; chapter 4a trains the models on the corpus with it."""

__version__ = "0.0.1"
