"""Train many more Hugging Face architectures healthy and see what the diagnosis says of them.

The real corpus (``real_corpus/``) holds the cases CI runs; this sweep is its wider net for
false alarms, a rule being only as good as its worst one: 36 more architectures (decoder
LMs with mixtures of experts, parallel residuals, ALiBi, sliding windows, logit scaling,
state-space and recurrent mixers; encoders; vision transformers and CNNs), each built from
its config at random init (width 64, 2 layers, where the config allows) and trained as a
user would (AdamW 1e-3) for 200 steps by the corpus's own loop (one CPU thread, seed 0,
``gw.watch`` at its fixed spacing), on the corpus's data: byte LMs on 64-byte windows of
the standard library's sources, encoders on which of two stdlib files a 48-byte window
comes from, vision models on 32 x 32 scikit-learn digits. The independent check is the
corpus's ``learns()`` (the last 20 losses under 0.7 x the first 5); a healthy architecture
that learns must draw no warning.

Run: ``PYTHONPATH=src python benchmarks/architecture_sweep.py [--only NAME ...]
[--write-docs | --budget] [--layers N]`` (about five minutes on one core; ``--layers 12``
builds them 12 layers deep, about twenty). ``--write-docs`` writes the
table into docs/diagnosis.md's generated block (benchmarks/_docs.py); ``--budget`` records
under ``gw.watch``'s defaults instead and prints the share of step time each run spent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _docs
from real_corpus.cases import Case, record
from real_corpus.checks import learns
from real_corpus.data import byte_windows, digit_images, which_file_windows
from real_corpus.models import Setup, ce_pixels, hf_classifier

SCRIPT = "benchmarks/architecture_sweep.py"
COLUMNS = ("architecture", "kind", "independent check", "warnings and criticals", "infos", "s")
DOCS_COLUMNS: dict[str, list[tuple[str, ...]]] = {"": [COLUMNS]}

#: (seed, layers or None for the config's own depth) -> the set-up.
Build = Callable[[int, int | None], Setup]


def _transformers() -> Any:
    import transformers

    return transformers


#: The config keys that hold a transformer's depth, by library family.
_DEPTH_KEYS = ("num_hidden_layers", "n_layer", "n_layers")


def _at_depth(cfg: dict[str, Any], layers: int | None) -> dict[str, Any]:
    """``cfg`` with its depth key set to ``layers`` (unchanged when None, or for a config
    whose depth is per stage, a CNN's ``depths``)."""
    if layers is None:
        return cfg
    return {k: (layers if k in _DEPTH_KEYS else v) for k, v in cfg.items()}


def lm(config: str, model: str, **cfg: Any) -> Build:
    """A causal LM from ``transformers.<config>(**cfg)`` on 64-byte stdlib windows."""

    def build(seed: int, layers: int | None) -> Setup:
        t = _transformers()
        m = getattr(t, model)(getattr(t, config)(**_at_depth(cfg, layers)))
        return Setup(m, torch.optim.AdamW(m.parameters(), lr=1e-3), byte_windows(64, seed))

    return build


def encoder(config: str, model: str, **cfg: Any) -> Build:
    """A sequence classifier on which of two stdlib files a 48-byte window comes from."""

    def build(seed: int, layers: int | None) -> Setup:
        t = _transformers()
        cls = getattr(t, model)
        conf = getattr(t, config)(**_at_depth(cfg, layers))
        return hf_classifier(cls, conf, 2, which_file_windows(48, seed))

    return build


def vision(config: str, model: str, **cfg: Any) -> Build:
    """An image classifier on 32 x 32 digits (10 classes), called with ``pixel_values``."""

    def build(seed: int, layers: int | None) -> Setup:
        t = _transformers()
        conf = getattr(t, config)(**_at_depth(cfg, layers))
        conf.num_labels = 10
        m = getattr(t, model)(conf)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        return Setup(m, opt, digit_images(32, seed), loss=ce_pixels)

    return build


_D = {
    "vocab_size": 256,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
}
_L = {**_D, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
_KV = {**_L, "num_key_value_heads": 2}
_MOE = {**_KV, "num_experts_per_tok": 2}
_NO_DROP = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
_VIT = {
    "image_size": 32,
    "patch_size": 4,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}

#: name -> (kind, build): what each architecture adds to the corpus is in its config.
ARCHITECTURES: dict[str, tuple[str, Build]] = {
    "mixtral": ("LM, MoE", lm("MixtralConfig", "MixtralForCausalLM", **_MOE, num_local_experts=4)),
    "qwen2_moe": (
        "LM, MoE + shared expert",
        lm(
            "Qwen2MoeConfig",
            "Qwen2MoeForCausalLM",
            **_MOE,
            num_experts=4,
            moe_intermediate_size=64,
            shared_expert_intermediate_size=64,
        ),
    ),
    "olmoe": ("LM, MoE", lm("OlmoeConfig", "OlmoeForCausalLM", **_MOE, num_experts=4)),
    "gpt_neox": ("LM, parallel residual", lm("GPTNeoXConfig", "GPTNeoXForCausalLM", **_L)),
    "phi": ("LM, parallel residual", lm("PhiConfig", "PhiForCausalLM", **_L)),
    "phi3": ("LM", lm("Phi3Config", "Phi3ForCausalLM", **_L)),
    "falcon": (
        "LM, multi-query",
        lm(
            "FalconConfig",
            "FalconForCausalLM",
            vocab_size=256,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            bos_token_id=0,
            eos_token_id=0,
        ),
    ),
    "bloom": (
        "LM, ALiBi",
        lm(
            "BloomConfig",
            "BloomForCausalLM",
            vocab_size=256,
            hidden_size=64,
            n_layer=2,
            n_head=4,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        ),
    ),
    "opt": (
        "LM, ReLU",
        lm(
            "OPTConfig",
            "OPTForCausalLM",
            vocab_size=256,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=128,
            max_position_embeddings=64,
            word_embed_proj_dim=64,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=0,
            dropout=0.0,
        ),
    ),
    "gemma": (
        "LM, GeGLU, 1 + w norms",
        lm("GemmaConfig", "GemmaForCausalLM", **_KV, head_dim=16),
    ),
    "gemma2": (
        "LM, soft-capped logits, sliding window",
        lm("Gemma2Config", "Gemma2ForCausalLM", **_KV, head_dim=16, sliding_window=32),
    ),
    "gptj": (
        "LM, parallel residual",
        lm(
            "GPTJConfig",
            "GPTJForCausalLM",
            vocab_size=256,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=64,
            rotary_dim=8,
            bos_token_id=0,
            eos_token_id=0,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        ),
    ),
    "mistral": ("LM, sliding window", lm("MistralConfig", "MistralForCausalLM", **_KV)),
    "qwen2": ("LM", lm("Qwen2Config", "Qwen2ForCausalLM", **_KV)),
    "olmo": ("LM, non-parametric norms", lm("OlmoConfig", "OlmoForCausalLM", **_L)),
    "starcoder2": ("LM", lm("Starcoder2Config", "Starcoder2ForCausalLM", **_KV)),
    "stablelm": (
        "LM, partial rotary",
        lm("StableLmConfig", "StableLmForCausalLM", **_L, num_key_value_heads=4),
    ),
    "cohere": ("LM, logits scaled 1/16", lm("CohereConfig", "CohereForCausalLM", **_KV)),
    "granite": ("LM, scaled residuals", lm("GraniteConfig", "GraniteForCausalLM", **_KV)),
    "rwkv": (
        "LM, RWKV recurrence",
        lm(
            "RwkvConfig",
            "RwkvForCausalLM",
            vocab_size=256,
            hidden_size=64,
            num_hidden_layers=2,
            attention_hidden_size=64,
            intermediate_size=128,
            context_length=64,
        ),
    ),
    "mamba2": (
        "LM, state space (reference path)",
        lm(
            "Mamba2Config",
            "Mamba2ForCausalLM",
            vocab_size=256,
            hidden_size=64,
            num_hidden_layers=2,
            state_size=16,
            num_heads=8,
            head_dim=16,
            n_groups=1,
            expand=2,
            chunk_size=16,
        ),
    ),
    "falcon_mamba": (
        "LM, state space (reference path)",
        lm(
            "FalconMambaConfig",
            "FalconMambaForCausalLM",
            vocab_size=256,
            hidden_size=64,
            num_hidden_layers=2,
            state_size=8,
        ),
    ),
    "jamba": (
        "LM, attention + Mamba + MoE",
        lm(
            "JambaConfig",
            "JambaForCausalLM",
            **_KV,
            num_experts=4,
            num_experts_per_tok=2,
            attn_layer_period=2,
            attn_layer_offset=1,
            expert_layer_period=2,
            expert_layer_offset=1,
            mamba_d_state=8,
            use_mamba_kernels=False,
        ),
    ),
    "recurrent_gemma": (
        "LM, linear recurrence + local attention",
        lm(
            "RecurrentGemmaConfig",
            "RecurrentGemmaForCausalLM",
            vocab_size=256,
            hidden_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            intermediate_size=128,
            lru_width=64,
            attention_window_size=32,
            block_types=("recurrent", "recurrent", "attention"),
            head_dim=16,
            num_key_value_heads=2,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        ),
    ),
    "distilbert": (
        "encoder",
        encoder(
            "DistilBertConfig",
            "DistilBertForSequenceClassification",
            vocab_size=256,
            dim=64,
            n_layers=2,
            n_heads=4,
            hidden_dim=128,
            max_position_embeddings=64,
            dropout=0.0,
            attention_dropout=0.0,
            seq_classif_dropout=0.0,
        ),
    ),
    "electra": (
        "encoder",
        encoder(
            "ElectraConfig", "ElectraForSequenceClassification", **_D, embedding_size=64, **_NO_DROP
        ),
    ),
    "fnet": (
        "encoder, Fourier mixing",
        encoder(
            "FNetConfig",
            "FNetForSequenceClassification",
            vocab_size=256,
            hidden_size=64,
            num_hidden_layers=2,
            intermediate_size=128,
            max_position_embeddings=64,
            hidden_dropout_prob=0.0,
        ),
    ),
    "xlnet": (
        "encoder, permutation LM",
        encoder(
            "XLNetConfig",
            "XLNetForSequenceClassification",
            vocab_size=256,
            d_model=64,
            n_layer=2,
            n_head=4,
            d_inner=128,
            dropout=0.0,
        ),
    ),
    "deit": (
        "vision transformer",
        vision(
            "DeiTConfig", "DeiTForImageClassification", **_VIT, intermediate_size=128, **_NO_DROP
        ),
    ),
    "beit": (
        "vision transformer, relative positions",
        vision(
            "BeitConfig",
            "BeitForImageClassification",
            **_VIT,
            intermediate_size=128,
            use_mean_pooling=True,
        ),
    ),
    "dinov2": (
        "vision transformer, LayerScale",
        vision("Dinov2Config", "Dinov2ForImageClassification", **_VIT, mlp_ratio=2),
    ),
    "regnet": (
        "CNN, grouped convolutions",
        vision(
            "RegNetConfig",
            "RegNetForImageClassification",
            embedding_size=16,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            groups_width=8,
        ),
    ),
    "convnextv2": (
        "CNN, global response norm",
        vision(
            "ConvNextV2Config",
            "ConvNextV2ForImageClassification",
            hidden_sizes=[16, 32],
            depths=[1, 1],
            num_stages=2,
            patch_size=2,
            image_size=32,
        ),
    ),
    "bit": (
        "CNN, weight standardisation + group norm",
        vision(
            "BitConfig",
            "BitForImageClassification",
            embedding_size=16,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            layer_type="bottleneck",
            num_groups=8,
        ),
    ),
    "mobilevit": (
        "CNN + transformer",
        vision(
            "MobileViTConfig",
            "MobileViTForImageClassification",
            image_size=32,
            patch_size=2,
            hidden_sizes=[32, 40, 48],
            neck_hidden_sizes=[8, 8, 12, 16, 24, 32, 64],
        ),
    ),
    "pvt": (
        "vision transformer, spatial reduction",
        vision(
            "PvtConfig",
            "PvtForImageClassification",
            image_size=32,
            num_encoder_blocks=2,
            depths=[1, 1],
            sequence_reduction_ratios=[2, 1],
            hidden_sizes=[16, 32],
            patch_sizes=[4, 2],
            strides=[4, 2],
            num_attention_heads=[1, 2],
            mlp_ratios=[2, 2],
        ),
    ),
}


def sweep(names: list[str], budget: bool = False, layers: int | None = None) -> list[list[str]]:
    """Train each architecture (under ``gw.watch``'s overhead budget when ``budget``, which
    also prints the share it measured; ``layers`` deep where given); print and return its
    table row."""
    rows = []
    for name in names:
        kind, build = ARCHITECTURES[name]
        case = Case(name, kind, partial(build, layers=layers), learns(), healthy=True)
        t0 = time.perf_counter()
        run = record(case, watch={} if budget else None)
        ok, detail = case.check(run)
        alarms = [f"{f.rule}:{f.severity}" for f in run.findings if f.severity != "info"]
        infos = [f.rule for f in run.findings if f.severity == "info"]
        seconds = time.perf_counter() - t0
        verdict = ("learns: " if ok else "learns slowly: ") + detail.split(" (")[0]
        row = [name, kind, verdict, ", ".join(alarms) or "none", ", ".join(infos) or "-"]
        rows.append([*row, f"{seconds:.1f}"])
        schedule = run.trace.config.get("schedule") or {}
        share = schedule.get("measured_share")
        spent = f"  measured share {share:.1%}" if isinstance(share, float) else ""
        print(f"{name:16s} {seconds:5.1f} s  {verdict}  alarms: {row[3]}  info: {row[4]}{spent}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(ARCHITECTURES), default=None)
    parser.add_argument("--write-docs", action="store_true", help="update docs/diagnosis.md")
    parser.add_argument(
        "--budget",
        action="store_true",
        help="record under gw.watch's defaults (the overhead budget: its spacing depends on "
        "this machine's speed) and print the share it measured; not with --write-docs",
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=None,
        help="build every architecture whose config gives one depth at this many layers "
        "instead of 2 (those whose depth is per stage keep theirs); not with --write-docs",
    )
    args = parser.parse_args()
    if args.layers is not None and (args.write_docs or args.layers < 1):
        parser.error("--layers takes a positive count, and the docs keep the 2-layer table")
    if args.budget and args.write_docs:
        parser.error("--budget runs depend on the machine's speed: the docs keep fixed spacing")
    names = args.only or list(ARCHITECTURES)
    if args.write_docs and args.only:
        parser.error("--write-docs writes the whole table: run every architecture")
    rows = sweep(names, args.budget, args.layers)
    if args.write_docs:
        learned = sum(1 for r in rows if r[2].startswith("learns:"))
        quiet = sum(1 for r in rows if r[3] == "none")
        note = (
            f"One CPU thread, 200 steps each. {learned} of {len(rows)} learned by the check; "
            f"{quiet} of {len(rows)} drew no warning or critical."
        )
        _docs.write_table("docs/diagnosis.md", SCRIPT, note, COLUMNS, rows)


if __name__ == "__main__":
    main()
