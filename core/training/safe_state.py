"""Checkpoint files that cannot run code, a manifest that proves a checkpoint is whole, disk-full errors.

What a training checkpoint holds besides the weights, and how each part is stored:

    state/trainer.json          our counters (step, config hash, elapsed time) -- JSON
    state/scheduler.json             the LR scheduler's state_dict without `lr_lambdas` -- JSON
    state/rng-<rank>.json       python `random` and numpy MT19937 state (plain ints) -- JSON
    state/rng-<rank>.safetensors  torch CPU/CUDA generator states and any other tensor state
    manifest.json               size + sha256 of every other file of the checkpoint; written LAST

accelerate's `register_for_checkpointing` stores objects as `custom_checkpoint_N.pkl` and loads them
with `weights_only=False` (accelerate 1.15 `checkpointing.load_custom_state`), and `save_state`
pickles the RNG states (`random_states_N.pkl`); so our objects are never registered with accelerate
and its RNG file is replaced by the JSON/safetensors pair above. What accelerate still writes
(`model.safetensors`, `optimizer.bin` via `torch.save` of tensors and plain containers) it reads back
with `torch.load(weights_only=True)` (`accelerate.utils.other.load` sets it), so that part is safe.

A checkpoint folder may only contain names from ALLOWED_PATTERNS, each loaded by safetensors, JSON,
YAML's safe loader or `torch.load(weights_only=True)`; anything else (a `.pkl`, a symlink) makes the
checkpoint refused. The manifest is integrity, not authentication: it tells a truncated or half-written
checkpoint from a whole one, while the loaders above are what keeps a crafted file from running code.
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch

from core.errors import CheckpointError, StudioError
from core.fsutil import atomic_write_json, checkpoint_dirs

MANIFEST = "manifest.json"
TRAINER_STATE = "trainer.json"
SCHEDULER_STATE = "scheduler.json"
MANIFEST_VERSION = 1

# Every file a checkpoint of core.train may hold, relative to the checkpoint folder. The loader of each
# kind is pickle-free: *.safetensors (safetensors), *.json (json), *.yaml (yaml.safe_load),
# *.bin / model.pt (torch.load(weights_only=True)), README.md (text, never parsed).
ALLOWED_PATTERNS = (
    "*.json", "*.safetensors", "config.yaml", "model.pt", "README.md",
    "*/adapter_config.json", "*/adapter_model.safetensors", "*/README.md",
    "state/*.json", "state/*.safetensors", "state/optimizer*.bin", "state/scheduler*.bin", "state/scaler.pt",
    # sharded runs (FSDP): torch.distributed.checkpoint folders, one file per rank + their index; the
    # tensors load with weights_only=True, the index (.metadata) is torch's own pickle of plain records
    "state/pytorch_model_fsdp_*/*.distcp", "state/pytorch_model_fsdp_*/.metadata",
    "state/optimizer_*/*.distcp", "state/optimizer_*/.metadata",
)


class DiskFullError(StudioError, OSError):
    """No space left (or quota exceeded) while writing; the message names the file and the free space."""
    code = "disk_full"

    def __init__(self, errno_: int, message: str, **params):
        StudioError.__init__(self, message, **params)
        self.errno, self.strerror = errno_, message  # what OSError's callers read

    def __reduce__(self):  # errno is a slot of OSError, not in __dict__
        return type(self), (self.errno, self.message), dict(self.__dict__)


# ---- disk full --------------------------------------------------------------------------------
_FULL_TEXT = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122",
              # torch's zip writer reports a failed write as a position mismatch or a failed write
              "unexpected pos", "pytorchstreamwriter failed writing")


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC/EDQUOT and for the wrapped forms torch and safetensors raise for them."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, DiskFullError):
            return True
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(t in str(err).lower() for t in _FULL_TEXT):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def _free_text(path: Path) -> str:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "free space unknown"
    return f"{free / 2**20:.1f} MiB free on that filesystem"


def disk_full_error(path: str | os.PathLike, err: BaseException) -> DiskFullError:
    free = _free_text(Path(path))
    return DiskFullError(errno.ENOSPC, f"disk full while writing {path} ({free}): free some "
                                       f"space (old runs, exports, checkpoints) or lower training.keep_last, "
                                       f"then resume [{type(err).__name__}: {err}]", path=str(path), free=free)


def guarded_write(path: str | os.PathLike, write: Callable[[], Any]) -> Any:
    """Run `write()`; a disk-full failure in it becomes a DiskFullError naming `path`."""
    try:
        return write()
    except DiskFullError:
        raise
    except Exception as err:
        if is_disk_full(err):
            raise disk_full_error(path, err) from err
        raise


# ---- JSON-only state --------------------------------------------------------------------------
def write_json(path: Path, obj: Any) -> None:
    guarded_write(path, lambda: atomic_write_json(path, obj))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the checkpoint is damaged") from None
    except RecursionError:  # nesting deeper than the parser's stack: damaged or hostile, either way unusable
        raise CheckpointError(f"{path} is nested too deeply to be a checkpoint file; the checkpoint is damaged") from None


def save_scheduler(path: Path, scheduler: Any) -> None:
    """A LambdaLR-style scheduler's state as JSON. `lr_lambdas` (functions) are rebuilt by the trainer."""
    state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    try:
        write_json(Path(path), state)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"scheduler state is not plain JSON ({err})") from None


def load_scheduler(path: Path, scheduler: Any) -> None:
    """Load `scheduler.json` into `scheduler`, taking only keys the scheduler itself has, with JSON types."""
    stored = read_json(path)
    current = scheduler.state_dict()
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    state: dict[str, Any] = {}
    for key, value in current.items():
        if key == "lr_lambdas":
            # LambdaLR.load_state_dict updates callable objects' __dict__ from this list; None = plain function
            state[key] = [None] * len(value)
            continue
        if key not in stored:
            raise CheckpointError(f"{path}: missing scheduler field {key!r}")
        new = stored[key]
        if value is not None and new is not None and type(new) is not type(value) and not (
                isinstance(value, (int, float)) and isinstance(new, (int, float)) and not isinstance(new, bool)):
            raise CheckpointError(f"{path}: scheduler field {key!r} has type {type(new).__name__}, "
                                  f"expected {type(value).__name__}")
        state[key] = new
    scheduler.load_state_dict(state)


# ---- RNG state --------------------------------------------------------------------------------
def _rng_names(rank: int) -> tuple[str, str]:
    return f"rng-{rank}.json", f"rng-{rank}.safetensors"


def save_rng(folder: Path, rank: int = 0, extra_tensors: Optional[dict[str, torch.Tensor]] = None) -> None:
    """python, numpy, torch CPU and CUDA generator states of this process (+ `extra_tensors`, e.g. a
    module's own generator), as JSON + safetensors."""
    from safetensors.torch import save_file

    folder = Path(folder)
    version, internal, gauss = random.getstate()
    algo, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {"python": {"version": version, "state": list(internal), "gauss_next": gauss},
            "numpy": {"algorithm": algo, "keys": [int(k) for k in keys], "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "cuda_devices": 0, "extra": sorted(extra_tensors or {})}
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states = torch.cuda.get_rng_state_all()
        meta["cuda_devices"] = len(states)
        tensors.update({f"torch_cuda_{i}": s for i, s in enumerate(states)})
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous()
    jname, tname = _rng_names(rank)
    guarded_write(folder / tname, lambda: save_file(tensors, str(folder / tname)))
    write_json(folder / jname, meta)


def load_rng(folder: Path, rank: int = 0) -> dict[str, torch.Tensor]:
    """Restore the generator states saved by `save_rng`; returns the extra tensors by name.

    A checkpoint from a machine with a different number of CUDA devices restores the devices both have.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    jname, tname = _rng_names(rank)
    meta = read_json(folder / jname)
    try:
        tensors = load_file(str(folder / tname))
        py = meta["python"]
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss_next"]))
        npst = meta["numpy"]
        np.random.set_state((str(npst["algorithm"]), np.asarray(npst["keys"], dtype=np.uint32), int(npst["pos"]),
                             int(npst["has_gauss"]), float(npst["cached_gaussian"])))
        torch.set_rng_state(tensors["torch_cpu"])
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{folder}: random generator state is damaged ({type(err).__name__}: {err})") from None
    if torch.cuda.is_available():
        for i in range(min(int(meta.get("cuda_devices", 0)), torch.cuda.device_count())):
            torch.cuda.set_rng_state(tensors[f"torch_cuda_{i}"], i)
    return {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}


# ---- manifest ---------------------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> Iterable[Path]:
    for p in sorted(folder.rglob("*")):
        if p.is_symlink() or p.is_file():
            yield p


def _allowed(rel: str) -> bool:
    return any(fnmatch.fnmatchcase(rel, pat) and rel.count("/") == pat.count("/") for pat in ALLOWED_PATTERNS)


def write_manifest(folder: str | os.PathLike) -> Path:
    """Record size + sha256 of every file of `folder`; call after everything else is written and synced."""
    folder = Path(folder)
    files = {}
    for p in _files(folder):
        rel = p.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        if p.is_symlink():
            raise CheckpointError(f"{p} is a symbolic link; a checkpoint holds only plain files")
        files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    path = folder / MANIFEST
    write_json(path, {"version": MANIFEST_VERSION, "files": files})
    return path


def verify_checkpoint(folder: str | os.PathLike, hashes: bool = True) -> list[str]:
    """Problems that make `folder` unusable (empty list = intact). Checks the manifest, that no file is
    missing, extra, resized or altered, and that every file is of a kind we load without pickle."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    mpath = folder / MANIFEST
    if not mpath.is_file():
        return [f"no {MANIFEST}: the checkpoint was not finished (interrupted save or older format)"]
    try:
        manifest = read_json(mpath)
        listed = manifest["files"]
        if not isinstance(listed, dict):
            raise TypeError("files is not an object")
    except (CheckpointError, KeyError, TypeError) as err:
        return [f"{MANIFEST} is damaged ({err})"]
    problems = []
    on_disk = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
    on_disk.pop(MANIFEST, None)
    for rel, p in on_disk.items():
        if p.is_symlink():
            problems.append(f"{rel} is a symbolic link (refused)")
        elif not _allowed(rel):
            problems.append(f"{rel} is not a file a checkpoint may hold (refused; only safetensors/JSON/YAML "
                            "and weights-only tensor files are loaded)")
        elif rel not in listed:
            problems.append(f"{rel} is not in the manifest (added after the save)")
        elif rel.endswith("/.metadata"):
            why = dcp_metadata_problem(p)
            if why:
                problems.append(f"{rel}: {why}")
    for rel, rec in listed.items():
        p = on_disk.get(rel)
        if p is None:
            problems.append(f"{rel} is missing")
            continue
        if p.is_symlink() or not _allowed(rel):
            continue
        try:
            size, digest = int(rec["size"]), str(rec["sha256"])
        except (KeyError, TypeError, ValueError, OverflowError):  # a size of 1e400 reads as infinity
            problems.append(f"{MANIFEST} entry for {rel} is damaged")
            continue
        if p.stat().st_size != size:
            problems.append(f"{rel} has {p.stat().st_size} bytes, the manifest says {size} (truncated or altered)")
        elif hashes and sha256_file(p) != digest:
            problems.append(f"{rel} does not match its sha256 in the manifest (altered or corrupted)")
    return problems


# torch.distributed.checkpoint reads its `.metadata` index with plain pickle.load. Before any load we
# replay that pickle with an unpickler that can build only DCP's own record types, torch dtypes and
# sizes and paths: a crafted index that names anything else (os.system, builtins.eval, ...) is refused.
_DCP_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")
_DCP_EXTRA = {("torch", "Size"), ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"),
              ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"),
              ("pathlib", "PureWindowsPath")}


class _DcpUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        import importlib

        import torch

        if (module, name) in _DCP_EXTRA:
            return super().find_class(module, name)
        obj = getattr(importlib.import_module(module), name, None) if module in _DCP_MODULES + ("torch",) else None
        if module in _DCP_MODULES and isinstance(obj, type):
            return obj
        if module == "torch" and isinstance(obj, torch.dtype):
            return obj
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which a checkpoint index never holds")


def dcp_metadata_problem(path: str | os.PathLike) -> Optional[str]:
    """None when a sharded checkpoint's `.metadata` holds only DCP records; else why it is refused."""
    try:
        with open(path, "rb") as f:
            _DcpUnpickler(f).load()
    except Exception as err:  # noqa: BLE001 - any failure means we will not hand it to pickle.load
        return f"refused as a sharded-checkpoint index ({err})"
    return None


def choose_resume(root: str | os.PathLike, requested: Optional[str | os.PathLike] = None,
                  log: Callable[[str], None] = print) -> Optional[Path]:
    """The checkpoint to resume from: `requested` if given and intact, else the newest intact one.

    Each damaged checkpoint passed over is reported through `log` with its problems. Returns None when
    there are no checkpoints; raises CheckpointError when there are some but none is intact (or the
    requested one is damaged: an explicit choice is never silently replaced).
    """
    if requested is not None:
        req = Path(requested)
        problems = verify_checkpoint(req)
        if problems:
            raise CheckpointError(f"cannot resume from {req}: " + "; ".join(problems[:5]))
        return req
    found = checkpoint_dirs(root)
    if not found:
        return None
    skipped = []
    for ckpt in reversed(found):
        problems = verify_checkpoint(ckpt)
        if not problems:
            if skipped:
                log(f"resuming from {ckpt.name}, the newest intact checkpoint: skipped " + "; ".join(
                    f"{name} ({', '.join(p[:3])})" for name, p in skipped))
            return ckpt
        skipped.append((ckpt.name, problems))
    raise CheckpointError("no intact checkpoint to resume from in " + str(root) + ": " + "; ".join(
        f"{name}: {', '.join(p[:3])}" for name, p in skipped) + ". Start the run again without --resume.")


# ---- the trainer's whole state, around accelerate's ---------------------------------------------
def save_training_state(state_dir: str | os.PathLike, accelerator: Any, scheduler: Any, trainer_state: dict,
                        extra_rng: Optional[dict[str, torch.Tensor]] = None) -> None:
    """Every rank: accelerate's model/optimizer files, then our JSON/safetensors parts (see module doc).

    Nothing is registered with `register_for_checkpointing`, so accelerate writes no custom pickle;
    its pickled RNG file is removed and replaced by `rng-<rank>.*`.
    """
    state_dir = Path(state_dir)
    rank = accelerator.process_index
    guarded_write(state_dir, lambda: accelerator.save_state(str(state_dir)))
    (state_dir / f"random_states_{rank}.pkl").unlink(missing_ok=True)
    save_rng(state_dir, rank, extra_rng)
    if accelerator.is_main_process:
        save_scheduler(state_dir / SCHEDULER_STATE, scheduler)
        write_json(state_dir / TRAINER_STATE, trainer_state)


def load_training_state(state_dir: str | os.PathLike, accelerator: Any, scheduler: Any,
                        **load_model_kwargs: Any) -> tuple[dict, dict[str, torch.Tensor]]:
    """Every rank: -> (trainer state dict, extra RNG tensors). Call on a checkpoint `verify_checkpoint`
    accepted. accelerate reads its files with `torch.load(weights_only=True)` / safetensors."""
    state_dir = Path(state_dir)
    if not (state_dir / TRAINER_STATE).is_file():
        raise CheckpointError(f"{state_dir / TRAINER_STATE} is missing: this checkpoint was written by an older "
                              "version (its state was pickled, which is no longer loaded); start the run again")
    accelerator.load_state(str(state_dir), **load_model_kwargs)
    load_scheduler(state_dir / SCHEDULER_STATE, scheduler)
    state = read_json(state_dir / TRAINER_STATE)
    if not isinstance(state, dict):
        raise CheckpointError(f"{state_dir / TRAINER_STATE}: expected a JSON object")
    return state, load_rng(state_dir, accelerator.process_index)
