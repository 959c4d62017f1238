"""The built-in DEMO model: SongGeneration's structure at a size a CPU trains in minutes.

Created on first use inside the workspace as an official runtime layout
(`models/demo/{ckpt/songgen_demo, third_party/demo-tokenizer, conf/vocab.yaml}`), deterministic
from a seed, so every feature of the studio works with nothing downloaded. Its tokenizer is a
small byte-level BPE we train on a bundled corpus and store in Qwen2's file format (vocab.json +
merges.txt + the same special tokens), so the same loading code serves both. Its weights start from
the official-style random init and are then briefly pre-trained on synthetic songs through the demo
codec (core.training.demo_pretrain, which owns `ensure_demo_model`; cached once per machine), so that, like a real checkpoint, it knows
its codec's tokens and a LoRA run has a base to adapt. It is not a song model, and is labelled a demo
wherever it appears.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import yaml

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"
DEMO_NAME = "songgen_demo"
DEMO_SEED = 20250613
DEMO_VERSION = "v2"
TOKENIZER_DIR = "third_party/demo-tokenizer"
TOKENIZER_VOCAB = 1200
STRUCTURE_TAGS = ["[verse]", "[chorus]", "[bridge]", "[intro-short]", "[intro-medium]", "[intro-long]",
                  "[outro-short]", "[outro-medium]", "[outro-long]", "[inst-short]", "[inst-medium]",
                  "[inst-long]", "[silence]"]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def demo_root(workspace: str | os.PathLike) -> Path:
    return Path(workspace) / "models" / "demo"


def build_tokenizer(out_dir: Path) -> None:
    """Train the demo BPE on the bundled corpus and write it in Qwen2's file format."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    corpus = (ASSETS / "tokenizer_corpus.txt").read_text(encoding="utf-8").splitlines()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(out_dir))
    n = tok.get_vocab_size()
    added = {str(n + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True} for i, t in enumerate(SPECIAL_TOKENS)}
    config = {"add_prefix_space": False, "added_tokens_decoder": added,
              "additional_special_tokens": SPECIAL_TOKENS[1:], "bos_token": None,
              "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>", "errors": "replace",
              "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
              "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def init_weights(model, seed: int) -> None:
    """Official-style init (Llama N(0, 0.02); emb[0] truncated normal 1/sqrt(D); zeroed padding rows)."""
    g = torch.Generator().manual_seed(seed)
    D = model.config.dim
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("transformer.", "transformer2.")) and name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.startswith(("transformer.", "transformer2.", "linears.")):
                p.normal_(0.0, 0.02, generator=g)
            elif name == "emb.0.weight":
                p.normal_(0.0, D ** -0.5, generator=g).clamp_(-3 * D ** -0.5, 3 * D ** -0.5)
            elif name.endswith("bias"):
                p.zero_()
            elif name.startswith("out_norm"):
                p.fill_(1.0)
            elif name.startswith("mlp."):
                p.uniform_(-(p.shape[-1] ** -0.5), p.shape[-1] ** -0.5, generator=g)
            else:
                p.normal_(0.0, 1.0, generator=g)
        cp = model.condition_provider.conditioners
        for emb in (cp["description"].output_proj, cp["description"].structure_emb, cp["type_info"].output_proj,
                    *cp["prompt_audio"].emb):
            emb.weight[emb.padding_idx].zero_()


def _write_runtime(root: Path) -> None:
    build_tokenizer(root / TOKENIZER_DIR)
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "vocab.yaml").write_text(yaml.safe_dump(STRUCTURE_TAGS), encoding="utf-8")
    ckpt = root / "ckpt" / DEMO_NAME
    ckpt.mkdir(parents=True)
    (ckpt / "config.yaml").write_text((ASSETS / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")


def ensure_demo_runtime(workspace: str | os.PathLike) -> Path:
    """The demo checkpoint folder with its runtime (tokenizer, vocab, config.yaml), created on first use;
    its weights (model.pt) are written by `write_demo_weights`. Enough to read the model's limits."""
    return _runtime_at(demo_root(workspace))


def _runtime_at(root: Path) -> Path:
    root = Path(root)
    ckpt = root / "ckpt" / DEMO_NAME
    if (ckpt / "config.yaml").is_file() and (root / TOKENIZER_DIR / "tokenizer_config.json").is_file():
        return ckpt
    if root.exists():
        shutil.rmtree(root)  # an incomplete earlier attempt
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    try:
        _write_runtime(tmp)
        try:
            os.replace(tmp, root)
        except OSError:
            if not (ckpt / "config.yaml").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process made it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ckpt


# (model, config_text, tokenizer_dir, seed) -> what the sidecar records under "pretrained"
Pretrain = Callable[[Any, str, Path, int], dict]


def write_demo_weights(ckpt: Path, seed: int = DEMO_SEED, pretrain: Optional[Pretrain] = None) -> Path:
    """Build the demo model at the official-style random init, let `pretrain` (the training package's) bring
    it to its weights, and write model.pt + sidecar; model.pt is moved in last, so it marks a whole model."""
    from core.model.checkpoint import SIDECAR
    from core.model.lelm import LeLM
    from core.model.official_config import read_official_config

    ckpt = Path(ckpt)
    root = ckpt.parents[1]
    text = (ckpt / "config.yaml").read_text(encoding="utf-8")
    model = LeLM.build(read_official_config(ckpt / "config.yaml", runtime_root=root), DEMO_VERSION)
    init_weights(model, seed)
    model.reset_rotary()
    model.is_demo = True
    pretrained = pretrain(model, text, root / TOKENIZER_DIR, seed) if pretrain else None
    tmp = Path(tempfile.mkdtemp(prefix=".weights-", dir=ckpt.parent))
    try:
        model.save_pretrained(tmp, dtype=torch.float32)
        side = json.loads((tmp / SIDECAR).read_text())
        side.update({"runtime_root": str(root.resolve()), "seed": seed, "pretrained": pretrained})
        (tmp / SIDECAR).write_text(json.dumps(side, indent=2), encoding="utf-8")
        os.replace(tmp / SIDECAR, ckpt / SIDECAR)
        os.replace(tmp / "model.pt", ckpt / "model.pt")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ckpt


def demo_weights_state(ckpt: Path) -> Optional[dict]:
    """None without weights; else the sidecar (its "pretrained" is None for a random-init demo)."""
    from core.model.checkpoint import SIDECAR

    ckpt = Path(ckpt)
    if not (ckpt / "model.pt").is_file():
        return None
    try:
        return json.loads((ckpt / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def create_demo_model(root: Path, seed: int = DEMO_SEED, pretrain: Optional[Pretrain] = None) -> Path:
    """The demo runtime + checkpoint at `root`; random init unless `pretrain` is given
    (core.training.demo_pretrain.ensure_demo_model makes the studio's pre-trained one)."""
    return write_demo_weights(_runtime_at(root), seed, pretrain)
