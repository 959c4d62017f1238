"""A tiny random-weight Whisper checkpoint built here (config, byte-level BPE tokenizer, safetensors):
what a user's transcription model folder looks like, small enough for a test, nothing downloaded."""
from __future__ import annotations

import json
from pathlib import Path

TEXT = ["hold on to me", "we are running to the sea", "the river carries me away", "past the houses made of stone"]
SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
           "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def build(folder: Path, seed: int = 0) -> Path:
    """Write config.json, generation_config.json, model.safetensors and the tokenizer/feature-extractor files."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXT * 4, vocab_size=300, min_frequency=1, show_progress=False)
    bpe.save_model(str(folder))
    tok = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), errors="replace",
                           unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                           pad_token="<|endoftext|>")
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    tok.add_tokens(SPECIAL + timestamps, special_tokens=True)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL}
    cfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, d_model=16, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=64,
                        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
                        eos_token_id=ids["<|endoftext|>"], decoder_start_token_id=ids["<|startoftranscript|>"])
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    gen = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], max_length=64,
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=True, lang_to_id={"<|en|>": ids["<|en|>"], "<|zh|>": ids["<|zh|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        forced_decoder_ids=None, begin_suppress_tokens=[ids["<|endoftext|>"]], suppress_tokens=[])
    model.generation_config = gen
    model.save_pretrained(str(folder), safe_serialization=True)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(str(folder))
    (folder / "README.txt").write_text("tiny random-weight Whisper for tests\n", encoding="utf-8")
    return folder
