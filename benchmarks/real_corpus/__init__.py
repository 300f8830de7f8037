"""The real-architecture diagnosis corpus: models people actually train, healthy or broken.

Where ``diagnosis_corpus.py`` builds toy MLPs and RNNs broken by construction, this corpus
builds the architectures users bring: Hugging Face GPT-2, BERT, ViT and ResNet (from configs,
random init, nothing downloaded), encoder-decoders, audio, state-space and windowed-attention
models (``families.py``: T5, BART, wav2vec2, Mamba, Swin), PyTorch's word-language-model LSTM
recipe, pre-LN residual MLPs and post-LN transformers at PyTorch's default init, a DDPM noise
predictor. Each trains
for at most a few hundred CPU steps (the slow cases, a weight-decay recipe's few thousand) on
data that ships with the environment: scikit-learn's digits, the bytes of Python's own
standard library, and byte windows drawn from it.

Every case carries an independent check (``Case.check``) computed from the training loop's
own losses, gradients and probes, never from gradwatch: a healthy case must really learn, a
broken one must really be broken (loss at chance, non-finite values, a failed memory probe).
The tests (``tests/diagnosis/test_real_corpus.py``) assert both the check and the diagnosis.

Run: ``PYTHONPATH=src python benchmarks/diagnosis_corpus.py --corpus real [--only NAME]``
prints this corpus' confusion table (``--corpus both``, the default, prints the toy one too).
"""

from __future__ import annotations

import os

# Build every Hugging Face model from its config: nothing may reach the hub. Set before any
# submodule can import transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from .cases import CASES, REAL_CORPUS, Case, record
from .checks import Check, Run
from .models import Setup

__all__ = ["CASES", "REAL_CORPUS", "Case", "Check", "Run", "Setup", "record"]
