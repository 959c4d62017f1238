"""core.training.safe_state: pickle-free trainer/scheduler/RNG state, the manifest, fallback, disk-full errors."""
from __future__ import annotations

import errno
import json
import random

import numpy as np
import pytest
import torch

from core.training import safe_state as cio


def _sched():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))


def test_scheduler_roundtrip_is_json(tmp_path):
    opt, sched = _sched()
    for _ in range(5):
        opt.step()
        sched.step()
    cio.save_scheduler(tmp_path / "scheduler.json", sched)
    data = json.loads((tmp_path / "scheduler.json").read_text())
    assert data["last_epoch"] == 5 and "lr_lambdas" not in data
    opt2, sched2 = _sched()
    cio.load_scheduler(tmp_path / "scheduler.json", sched2)
    assert sched2.last_epoch == 5 and sched2.get_last_lr() == sched.get_last_lr()
    sched.step(), sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_scheduler_refuses_wrong_types_and_missing_fields(tmp_path):
    _, sched = _sched()
    cio.save_scheduler(tmp_path / "s.json", sched)
    data = json.loads((tmp_path / "s.json").read_text())
    (tmp_path / "bad.json").write_text(json.dumps(dict(data, last_epoch="os.system")))
    with pytest.raises(cio.CheckpointError, match="last_epoch"):
        cio.load_scheduler(tmp_path / "bad.json", sched)
    (tmp_path / "miss.json").write_text(json.dumps({k: v for k, v in data.items() if k != "base_lrs"}))
    with pytest.raises(cio.CheckpointError, match="base_lrs"):
        cio.load_scheduler(tmp_path / "miss.json", sched)
    (tmp_path / "extra.json").write_text(json.dumps(dict(data, optimizer="x")))
    cio.load_scheduler(tmp_path / "extra.json", sched)  # unknown keys are not copied onto the scheduler
    assert isinstance(sched.optimizer, torch.optim.Optimizer)


def test_rng_roundtrip_restores_every_generator(tmp_path):
    gen = torch.Generator().manual_seed(7)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.rand(), torch.rand(1), np.random.randn()
    cio.save_rng(tmp_path, rank=1, extra_tensors={"dropout": gen.get_state()})
    want = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2), torch.rand(1, generator=gen))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    extra = cio.load_rng(tmp_path, rank=1)
    gen2 = torch.Generator()
    gen2.set_state(extra["dropout"])
    got = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2), torch.rand(1, generator=gen2))
    assert got[:3] == want[:3] and torch.equal(got[3], want[3]) and torch.equal(got[4], want[4])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rng-1.json", "rng-1.safetensors"]


def _ckpt(root, step, payload=b"w" * 100):
    d = root / f"step-{step}"
    (d / "state").mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(payload)
    (d / "trainer_state.json").write_text(json.dumps({"step": step}))
    (d / "state" / "optimizer.bin").write_bytes(b"o" * 50)
    cio.write_manifest(d)
    return d


def test_manifest_detects_truncation_tamper_extra_and_missing(tmp_path):
    d = _ckpt(tmp_path, 1)
    assert cio.verify_checkpoint(d) == []
    man = json.loads((d / cio.MANIFEST).read_text())
    assert set(man["files"]) == {"adapter_model.safetensors", "trainer_state.json", "state/optimizer.bin"}
    (d / "state" / "optimizer.bin").write_bytes(b"o" * 20)
    assert any("truncated" in p for p in cio.verify_checkpoint(d))
    (d / "state" / "optimizer.bin").write_bytes(b"x" * 50)
    assert any("sha256" in p for p in cio.verify_checkpoint(d))
    d2 = _ckpt(tmp_path, 2)
    (d2 / "state" / "custom_checkpoint_0.pkl").write_bytes(b"x")
    assert any("custom_checkpoint_0.pkl" in p and "refused" in p for p in cio.verify_checkpoint(d2))
    d3 = _ckpt(tmp_path, 3)
    (d3 / "trainer_state.json").unlink()
    assert any("trainer_state.json is missing" in p for p in cio.verify_checkpoint(d3))
    d4 = _ckpt(tmp_path, 4)
    (d4 / "notes.json").write_text("{}")
    assert any("not in the manifest" in p for p in cio.verify_checkpoint(d4))
    d5 = _ckpt(tmp_path, 5)
    (d5 / "link.json").symlink_to("/etc/passwd")
    assert any("symbolic link" in p for p in cio.verify_checkpoint(d5))
    d6 = _ckpt(tmp_path, 6)
    (d6 / cio.MANIFEST).unlink()
    assert "not finished" in cio.verify_checkpoint(d6)[0]
    (d6 / cio.MANIFEST).write_bytes(b"\x80\x04garbage")
    assert "damaged" in cio.verify_checkpoint(d6)[0]


def test_choose_resume_falls_back_with_a_message(tmp_path):
    root = tmp_path / "checkpoints"
    assert cio.choose_resume(root) is None
    _ckpt(root, 10)
    _ckpt(root, 20)
    d30 = _ckpt(root, 30)
    (d30 / "adapter_model.safetensors").write_bytes(b"w" * 10)  # truncated by a crash
    msgs = []
    assert cio.choose_resume(root, log=msgs.append) == root / "step-20"
    assert len(msgs) == 1 and "step-30" in msgs[0] and "truncated" in msgs[0] and "step-20" in msgs[0]
    with pytest.raises(cio.CheckpointError, match="cannot resume from .*step-30"):
        cio.choose_resume(root, requested=d30)  # an explicit choice is never silently replaced
    for d in cio.checkpoint_dirs(root):
        (d / cio.MANIFEST).unlink()
    with pytest.raises(cio.CheckpointError, match="no intact checkpoint.*step-30.*step-20.*step-10"):
        cio.choose_resume(root)


def test_disk_full_is_recognised_in_its_wrapped_forms(tmp_path):
    assert cio.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert cio.is_disk_full(RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0"))
    try:
        try:
            raise OSError(errno.ENOSPC, "x")
        except OSError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as wrapped:
        assert cio.is_disk_full(wrapped)
    assert not cio.is_disk_full(ValueError("nope")) and not cio.is_disk_full(OSError(errno.EACCES, "denied"))

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(cio.DiskFullError, match=r"disk full while writing .*x\.bin .*MiB free") as exc:
        cio.guarded_write(tmp_path / "x.bin", full)
    assert exc.value.errno == errno.ENOSPC
    with pytest.raises(ValueError):
        cio.guarded_write(tmp_path / "x.bin", lambda: (_ for _ in ()).throw(ValueError("other")))


def test_disk_full_during_a_real_state_save(tmp_path, monkeypatch):
    """safetensors' own writer failing with ENOSPC surfaces as DiskFullError naming the file."""
    import safetensors.torch as st

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(st, "save_file", no_space)
    with pytest.raises(cio.DiskFullError, match="rng-0.safetensors"):
        cio.save_rng(tmp_path)


def test_sharded_checkpoint_index_is_checked_before_pickle(tmp_path):
    """torch's DCP reads `.metadata` with pickle: a real index passes our restricted replay, a crafted
    one that would run code is refused without running it."""
    import os as _os
    import pickle as _pickle
    import warnings

    import torch
    import torch.distributed.checkpoint as dcp

    from core.training.safe_state import dcp_metadata_problem

    real = tmp_path / "real"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": {"w": torch.randn(3, 4), "b": torch.zeros(2, dtype=torch.bfloat16)}},
                 checkpoint_id=str(real), no_dist=True)
    assert dcp_metadata_problem(real / ".metadata") is None

    marker = tmp_path / "pwned"

    class Bomb:
        def __reduce__(self):
            return (_os.system, (f"touch {marker}",))

    bad = tmp_path / "bad.metadata"
    bad.write_bytes(_pickle.dumps(Bomb()))
    why = dcp_metadata_problem(bad)
    assert why and "system" in why and not marker.exists()
