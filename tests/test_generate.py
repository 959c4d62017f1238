"""Test generation, A/B and LoRA strength sweeps: files named for a listener, manifest, validation loss,
and the same seed giving the same tokens twice."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.test_export import CKPT, FIXTURE, make_adapter

pytestmark = pytest.mark.skipif(not (CKPT / "model.pt").is_file(), reason="tiny fixture not available")

LYRICS = "[verse] hello world.la la ; [chorus] sing it loud"


def make_dataset(path: Path, n_val: int = 2, frames: int = 6) -> Path:
    """A prepared-dataset folder (core.data.load_prepared's format) with a few validation songs."""
    from datasets import Dataset, DatasetDict

    g = torch.Generator().manual_seed(3)

    def rows(n, start):
        return {"idx": [f"song{start + i}" for i in range(n)],
                "codes": [torch.randint(0, 16384, (3, frames), generator=g).tolist() for _ in range(n)],
                "prompt": [torch.randint(0, 16384, (3, 8), generator=g).tolist() for _ in range(n)],
                "lyrics": [LYRICS] * n, "description": ["female, pop"] * n, "num_frames": [frames] * n}

    DatasetDict({"train": Dataset.from_dict(rows(2, 0)), "validation": Dataset.from_dict(rows(n_val, 10))}) \
        .save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from core.config import load_config

    root = tmp_path_factory.mktemp("gen")
    adapter = make_adapter(root / "ws" / "runs" / "r1" / "checkpoints" / "step-40", seed=2)
    ds = make_dataset(root / "ws" / "prepared" / "ds1")
    cfg = load_config(None, {"workspace": str(root / "ws"), "paths.base_model_path": str(CKPT),
                             "paths.runtime_path": str(FIXTURE), "data.codec": "demo",
                             "generation.lyrics": LYRICS, "generation.description": "female, pop, sad",
                             "generation.seed": 0, "generation.temperature": 1.0, "generation.top_k": 50,
                             "training.dataset_dir": str(ds)})
    return cfg, adapter, root


def test_ab_and_same_seed_same_tokens(setup):
    from core.export.compare import ab_compare

    cfg, adapter, root = setup
    m1 = ab_compare(cfg, str(adapter), out_dir=root / "ab1")
    out = Path(m1.out_dir)
    for name in ("A_base_seed0", "B_step-40_seed0"):
        data, sr = sf.read(out / f"{name}.wav")
        assert sr == 48000 and data.ndim == 2 and data.shape[1] == 2
        rec = json.loads((out / f"{name}.json").read_text())
        assert rec["settings"]["seed"] == 0 and rec["settings"]["lyrics"] == LYRICS
        assert rec["song"]["val_loss"] is not None and (out / f"{name}.tokens.npy").is_file()
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "ab" and man["settings"]["description"] == "female, pop, sad"
    assert man["validation"]["songs"] == 2
    a, b = man["items"]
    assert a["model"]["kind"] == "base" and b["model"]["kind"] == "lora" and b["model"]["strength"] == 1.0
    assert a["val_loss"] != b["val_loss"]  # base and finetuned are different models
    summary = (out / "summary.txt").read_text()
    assert "A_base_seed0.wav" in summary and f"{a['val_loss']:.4f}" in summary and f"{b['val_loss']:.4f}" in summary
    # the same seed again: the same tokens for both sides
    m2 = ab_compare(cfg, str(adapter), out_dir=root / "ab2")
    for x, y in zip(m1.items, m2.items):
        assert x.tokens_sha == y.tokens_sha
        assert np.array_equal(np.load(out / x.tokens_file), np.load(Path(m2.out_dir) / y.tokens_file))
    # refuses to write into a folder that has files
    from core.export.generate import GenerationError
    with pytest.raises(GenerationError, match="already has files"):
        ab_compare(cfg, str(adapter), out_dir=root / "ab1")


def test_sweep_strength_zero_matches_base(setup):
    from core.export.compare import generate_single, strength_sweep

    cfg, adapter, root = setup
    man = strength_sweep(cfg, str(adapter), [0, 0.5, 1.0], out_dir=root / "sweep")
    out = Path(man.out_dir)
    names = sorted(p.name for p in out.glob("*.wav"))
    assert names == ["strength-0.5_seed0.wav", "strength-0_seed0.wav", "strength-1_seed0.wav"]
    m = json.loads((out / "manifest.json").read_text())
    assert [i["model"]["strength"] for i in m["items"]] == [0.0, 0.5, 1.0]
    assert all(i["val_loss"] is not None for i in m["items"])
    base = generate_single(cfg, out_dir=root / "base", with_val_loss=True)
    assert base.items[0].files == ["base_seed0.wav"]
    # strength 0 is the base model: same tokens and the same validation loss
    assert man.items[0].tokens_sha == base.items[0].tokens_sha
    assert man.items[0].val_loss == pytest.approx(base.items[0].val_loss, abs=1e-6)


def test_sweep_and_ab_load_the_adapter_once(setup, monkeypatch):
    """One LoRA load per sweep / A-B (the scale changes per point; the base side disables the adapter),
    and the shared base is plain again afterwards."""
    from core.export.compare import run_models, strength_sweep
    from core.export.generate import ModelLoader, ModelSpec
    from core.model import lora

    cfg, adapter, root = setup
    loads = []
    real = lora.load_lora
    monkeypatch.setattr(lora, "load_lora", lambda *a, **k: loads.append(a[1]) or real(*a, **k))
    loader = ModelLoader(cfg)
    sweep = strength_sweep(cfg, str(adapter), [0, 1.0], out_dir=root / "sweep-once", with_val_loss=False,
                           loader=loader)
    assert len(loads) == 1 and not lora.lora_layers(loader.base())
    # the LoRA first, then the base side while the adapter is still loaded (disabled for it)
    man = run_models(cfg, [ModelSpec("lora", str(adapter), 1.0), ModelSpec("base")], ["b", "a"], kind="ab",
                     out_dir=root / "ba-once", with_val_loss=False, loader=loader)
    assert len(loads) == 2 and not lora.lora_layers(loader.base())
    assert man.items[0].tokens_sha == sweep.items[1].tokens_sha  # strength 1 == the LoRA as trained
    assert man.items[1].tokens_sha == sweep.items[0].tokens_sha  # disabled adapter == strength 0 == base


def test_gen_types_prompt_and_flac(setup, tmp_path):
    from core.export.compare import generate_single
    from core.export.generate import settings_from_config

    cfg, adapter, root = setup
    wav = np.random.default_rng(0).normal(0, 0.1, (48000 * 3, 2)).astype(np.float32)
    sf.write(tmp_path / "prompt.wav", wav, 48000)
    s = settings_from_config(cfg, gen_type="separate", prompt_audio=str(tmp_path / "prompt.wav"), audio_format="flac")
    man = generate_single(cfg, str(adapter), strength=0.5, settings=s, out_dir=root / "sep", with_val_loss=False)
    it = man.items[0]
    assert it.files == ["step-40_seed0.flac", "step-40_seed0_vocal.flac", "step-40_seed0_bgm.flac"]
    rec = json.loads((Path(man.out_dir) / it.settings_file).read_text())
    assert rec["prompt"] == str(tmp_path / "prompt.wav") and rec["model_description"].startswith("[Musicality")
    # prompt tokens from a file, bgm type (v2: pure-music description, lyrics "."); single-track rendering
    np.save(tmp_path / "p.npy", np.full((3, 8), 7, dtype=np.int64))
    s = settings_from_config(cfg, gen_type="bgm", prompt_tokens=str(tmp_path / "p.npy"))
    man = generate_single(cfg, settings=s, out_dir=root / "bgm", with_val_loss=False)
    rec = json.loads((Path(man.out_dir) / man.items[0].settings_file).read_text())
    assert man.items[0].files == ["base_seed0_bgm.wav"] and rec["model_lyrics"] == "."
    assert "[Pure-Music]" in rec["model_description"]


def test_decode_track_silences_the_other_track():
    from core.codec.demo import DemoCodec
    from core.export.generate import decode_track

    codec = DemoCodec()
    tokens = torch.randint(0, 16384, (3, 12), generator=torch.Generator().manual_seed(0))
    both, _ = decode_track(codec, tokens, "both")
    vocal, _ = decode_track(codec, tokens, "vocal")
    bgm, _ = decode_track(codec, tokens, "bgm")
    assert vocal.abs().sum() > 0 and bgm.abs().sum() > 0
    assert not torch.allclose(vocal, both) and not torch.allclose(bgm, both)


def test_cli_generate_ab(setup, capsys):
    from core.cli import main

    cfg, adapter, root = setup
    path = cfg.save(root / "cfg.yaml")
    rc = main(["generate", "--config", str(path), "--checkpoint", str(adapter), "--ab", "--seed", "3",
               "--out", str(root / "cli-ab"), "--no-val-loss"])
    assert rc == 0, capsys.readouterr().err
    assert (root / "cli-ab" / "A_base_seed3.wav").is_file() and (root / "cli-ab" / "B_step-40_seed3.wav").is_file()
    assert "A_base_seed3.wav" in capsys.readouterr().out


def test_demo_model_ab_and_sweep(tmp_path):
    """On the built-in demo model: A/B files, sweep files, manifests, and the same seed giving the same
    tokens twice (sweep strength 0 == A base, strength 1 == B, generated separately)."""
    from peft import LoraConfig, get_peft_model

    from core.export.compare import ab_compare, strength_sweep
    from core.config import load_config
    from core.model import LeLM
    from core.training.demo_pretrain import ensure_demo_model

    ws = tmp_path / "ws"
    ckpt = ensure_demo_model(ws)
    pm = get_peft_model(LeLM.from_pretrained(ckpt), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    adapter = ws / "runs" / "demo-run" / "checkpoints" / "step-10"
    pm.save_pretrained(str(adapter))
    cfg = load_config(None, {"workspace": str(ws), "paths.base_model_path": "demo", "data.codec": "demo",
                             "generation.lyrics": LYRICS, "generation.description": "male, rock"})
    kw = dict(with_val_loss=False)
    from core.export.generate import settings_from_config
    s = settings_from_config(cfg, max_frames=3, seed=5)
    ab = ab_compare(cfg, str(adapter), settings=s, out_dir=tmp_path / "ab", **kw)
    sw = strength_sweep(cfg, str(adapter), [0, 1], settings=s, out_dir=tmp_path / "sweep", **kw)
    assert sorted(p.name for p in (tmp_path / "ab").glob("*.wav")) == ["A_base_seed5.wav", "B_step-10_seed5.wav"]
    assert sorted(p.name for p in (tmp_path / "sweep").glob("*.wav")) == ["strength-0_seed5.wav", "strength-1_seed5.wav"]
    for folder in ("ab", "sweep"):
        man = json.loads((tmp_path / folder / "manifest.json").read_text())
        assert man["settings"]["seed"] == 5 and man["settings"]["base_is_demo"] is True
    assert sw.items[0].tokens_sha == ab.items[0].tokens_sha
    assert sw.items[1].tokens_sha == ab.items[1].tokens_sha


def test_decode_track_uses_the_codecs_track_option():
    from core.export.generate import GenerationError, decode_track

    class TrackCodec:  # shaped like OfficialCodec.decode (track=, seed=)
        id, is_demo = "fake-official", False

        def __init__(self):
            self.calls = []

        def decode(self, tokens, prompt=None, *, track="both", seed=None):
            self.calls.append((track, seed))
            return torch.zeros(2, 10), 48000

    class MixOnly:
        id, is_demo = "mix-only", False

        def decode(self, tokens, prompt=None):
            return torch.zeros(2, 10), 48000

    c = TrackCodec()
    tokens = torch.zeros(3, 4, dtype=torch.long)
    decode_track(c, tokens, "vocal", seed=3)
    decode_track(c, tokens, "both", seed=3)
    assert c.calls == [("vocal", 3), ("both", 3)]
    assert decode_track(MixOnly(), tokens, "both")[1] == 48000
    with pytest.raises(GenerationError, match="cannot render one track"):
        decode_track(MixOnly(), tokens, "bgm")


def test_with_a_core_train_lora_checkpoint(tmp_path):
    """A real LoRA run of core.train (1 step on the tiny fixture): merge finds the run's base by itself, and the
    A/B validation loss of the checkpoint is the number the trainer logged for it."""
    from core.runs import store as runs
    from core.export.compare import load_validation
    from core.config import load_config
    from core.training.evaluate import validation_loss
    from core.export.merge import export_checkpoint
    from core.export.generate import ModelLoader, ModelSpec
    from core.training.trainer import train

    ds = make_dataset(tmp_path / "ws" / "prepared" / "ds1")
    cfg = load_config(None, {"workspace": str(tmp_path / "ws"), "paths.base_model_path": str(CKPT),
                             "paths.runtime_path": str(FIXTURE), "data.codec": "demo", "training.type": "lora",
                             "training.max_steps": 1, "training.save_every": 1, "training.eval_every": 1,
                             "training.num_samples": 0, "training.mixed_precision": "no",
                             "training.learning_rate": 0.05, "training.dataset_dir": str(ds)})
    run = runs.create_run(cfg, name="t")
    train(runs.load_run_config(run), config_path=run / "config.yaml")
    ckpt = runs.latest_checkpoint(run)
    logged = [json.loads(x)["val_loss"] for x in (run / "metrics.jsonl").read_text().splitlines()
              if '"val_loss"' in x][-1]
    res = export_checkpoint(ckpt, cfg=load_config(None, {"workspace": str(tmp_path / "ws")}))  # base from the run
    assert res.kind == "lora-merge" and Path(res.base_model) == CKPT
    split, _, why = load_validation(cfg)
    assert why is None
    loader = ModelLoader(cfg)
    with loader.use(ModelSpec("b", str(ckpt))) as model:
        mine = validation_loss(model, split, max_frames=cfg.training.max_frames)["val_loss"]
    assert mine == pytest.approx(logged, abs=1e-5)
