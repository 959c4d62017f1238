"""The studio flow with `data.codec: official` on the tiny official-layout codec files:
prepare (official tokenizers, given stems) -> LoRA train a few steps -> generate -> decode to a wav."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from core.config import parse_config

from tests.paths import SHARED  # noqa: E402
CODEC_FX = SHARED / "fixtures" / "songgen-codec-tiny"


def test_official_codec_flow(tmp_path):
    from core.runs import store as runs
    from core.data import load_prepared, prepare
    from core.export.compare import generate_single
    from core.training.trainer import train
    from tests.test_train import make_small_demo

    ws = tmp_path / "ws"
    ckpt = make_small_demo(ws)
    # One runtime folder holds everything, as a SongGeneration checkout does: the codec files (tiny
    # fixture) beside the LM's tokenizer and tags (the demo model's).
    runtime = tmp_path / "runtime"
    (runtime / "third_party").mkdir(parents=True)
    for name in ("model_1rvq", "model_septoken", "vae", "fixture.json"):
        (runtime / name).symlink_to(CODEC_FX / name)
    (runtime / "third_party" / "demucs").symlink_to(CODEC_FX / "third_party" / "demucs")
    small_root = ckpt.parents[1]
    (runtime / "third_party" / "demo-tokenizer").symlink_to(small_root / "third_party" / "demo-tokenizer")
    (runtime / "conf").symlink_to(small_root / "conf")
    signal = torch.load(CODEC_FX / "cases.pt", weights_only=True)["signal"]
    songs = tmp_path / "songs"
    songs.mkdir()
    for name in ("vocal", "bgm"):
        sf.write(songs / f"a.{name}.wav", signal[name].T.numpy(), 48000, subtype="FLOAT")
    sf.write(songs / "a.wav", (signal["vocal"] + signal["bgm"]).T.numpy() / 4, 48000, subtype="FLOAT")
    items = [{"audio": str(songs / "a.wav"), "vocal": str(songs / "a.vocal.wav"), "bgm": str(songs / "a.bgm.wav"),
              "idx": "a", "lyrics": "[verse] the city lights are calling.we walk alone ; [chorus] hold on",
              "description": "female, pop, piano"}]
    data = {"workspace": str(ws),
            "paths": {"base_model_path": str(ckpt), "runtime_path": str(runtime),
                      "audio_tokenizer_path": str(runtime / "model_1rvq"),
                      "separate_audio_tokenizer_path": str(runtime / "model_septoken")},
            "data": {"codec": "official", "val_fraction": 0.0, "min_duration_s": 1.0, "prompt_offset_s": 0.0},
            "training": {"type": "lora", "max_steps": 3, "batch_size": 1, "learning_rate": 0.01, "max_frames": 40,
                         "eval_every": 100, "save_every": 3, "num_samples": 0, "seed": 1},
            "lora": {"r": 4, "alpha": 8},
            "generation": {"lyrics": "[verse] hold on", "description": "female, pop", "max_seconds": 0.4,
                           "seed": 0}}
    cfg = parse_config(data)

    result = prepare(cfg, items=items)
    assert result.summary["codec"] == "songgen-official-1" and not result.summary["codec_is_demo"]
    row = load_prepared(result.dataset_dir)["train"].with_format("torch")[0]
    assert row["codes"].shape == (3, 151) and int(row["codes"].max()) < 16384

    run_dir = runs.create_run(cfg, name="official")
    assert train(runs.load_run_config(run_dir), config_path=run_dir / "config.yaml") == "done"
    step = runs.latest_checkpoint(run_dir)
    assert step is not None and (step / "adapter_model.safetensors").is_file()

    manifest = generate_single(runs.load_run_config(run_dir), str(step))
    song = manifest.items[0]
    audio = Path(manifest.out_dir) / song.files[0] if not Path(song.files[0]).is_absolute() else Path(song.files[0])
    wav, sr = sf.read(audio, always_2d=True)
    assert sr == 48000 and wav.shape[1] == 2 and wav.shape[0] > 0 and np.isfinite(wav).all()
    assert float(np.abs(wav).max()) > 0.0
    settings = json.loads(Path(manifest.out_dir, "manifest.json").read_text())
    assert "songgen-official-1" in json.dumps(settings)
