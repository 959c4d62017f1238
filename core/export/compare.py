"""The same song through several models, side by side: one song, A/B, LoRA strength sweep.

A/B: the same lyrics, description, prompt and seed through model A (default: the base) and model B
(a LoRA or full checkpoint), files `A_<label>_seed<S>.<ext>` / `B_<label>_seed<S>.<ext>`. Sweep: one
LoRA checkpoint at several strengths with one seed, files `strength-<s>_seed<S>.<ext>`. Each run
folder gets `manifest.json` (all settings, per file the model, frames, token hash and the held-out
validation loss of that model) and `summary.txt` (the same as a table to read beside the audio).
The validation loss is core.training.evaluate's, the one the trainer logs (same crop, batching, pooling).
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from core.runs.budget import Budget, generation_bound
from core.training.evaluate import validation_loss
from core.fsutil import slugify
from core.export.generate import (GenerationError, ModelLoader, ModelSpec, Settings, SongResult, checkpoint_label,
                           frames_for, generate_song, generate_together, load_prompt, settings_from_config)


# ---------------------------------------------------------------------------------------------
# Held-out validation loss
# ---------------------------------------------------------------------------------------------
def load_validation(cfg, dataset_dir: Optional[str | Path] = None):
    """(validation split or None, dataset dir or None, why none)."""
    return _validation(cfg, dataset_dir)[:3]


def _validation(cfg, dataset_dir: Optional[str | Path] = None):
    """load_validation, plus the error that found no dataset (None otherwise): a UI words it in its own frame."""
    from core.config import ConfigError

    try:
        if dataset_dir is None:
            from core.training.dataset import find_dataset_dir
            dataset_dir = find_dataset_dir(cfg)
        from core.data import load_prepared
        dd = load_prepared(dataset_dir)
    except (ConfigError, ValueError, OSError, FileNotFoundError) as err:
        return None, None, f"no prepared dataset ({err})", str(err)
    if "validation" not in dd or len(dd["validation"]) == 0:
        why = f"{dataset_dir} has no validation songs (data.val_fraction is 0 or too few songs)"
        return None, str(dataset_dir), why, None
    return dd["validation"], str(dataset_dir), None, None


# ---------------------------------------------------------------------------------------------
# Runs: single, A/B, sweep
# ---------------------------------------------------------------------------------------------
@dataclass
class Manifest:
    kind: str
    out_dir: str
    items: list[SongResult] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    validation: Optional[dict[str, Any]] = None
    status: str = "running"  # "done" once every file is written; "stopped" (with `error`) when the job failed
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "out_dir": self.out_dir, "status": self.status, "error": self.error,
                "settings": self.settings, "validation": self.validation, "items": [i.to_dict() for i in self.items]}


def _out_dir(cfg, kind: str, out_dir: Optional[str | Path], overwrite: bool) -> Path:
    if out_dir is None:
        root = Path(cfg.generation.output_dir).expanduser() if cfg.generation.output_dir else \
            cfg.workspace_dir() / "generations"
        out = root / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}_{kind}"
        n = 1
        while out.exists():
            n += 1
            out = root / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}_{kind}-{n}"
    else:
        out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise GenerationError(f"{out} already has files; choose another output folder or pass --overwrite")
        if not (out / "manifest.json").is_file():
            raise GenerationError(f"{out} is not an earlier generation folder (no manifest.json); refusing to "
                                  "overwrite it even with --overwrite")
        import shutil
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_manifest(out: Path, man: Manifest) -> None:
    (out / "manifest.json").write_text(json.dumps(man.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    lines = [f"{man.kind}: {len(man.items)} file(s); same lyrics, description, prompt and seed for every row", ""]
    if man.status != "done":  # a partial folder says so before any row
        lines[:0] = [f"{man.status.upper()}: {man.error or 'still generating'}; the rows below are not the whole job", ""]
    if man.validation:
        v = man.validation
        lines.append(f"held-out validation loss: {v.get('songs', 0)} song(s) of {v.get('dataset')} "
                     f"(lower is better; mean cross-entropy of the 3 streams)" if v.get("dataset") else
                     f"held-out validation loss: not computed ({v.get('note')})")
        lines.append("")
    w = max([len(f) for i in man.items for f in i.files] + [4])
    lines.append(f"{'file':<{w}}  {'model':<28}  {'val_loss':>9}  frames")
    for it in man.items:
        label = it.model.get("label", "")
        if it.model.get("kind") == "lora":
            label += f" (LoRA x{it.model.get('strength', 1):g})"
        vl = "n/a" if it.val_loss is None else f"{it.val_loss:.4f}"
        for f in it.files:
            lines.append(f"{f:<{w}}  {label:<28}  {vl:>9}  {it.frames}")
    (out / "summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_models(cfg, specs: Sequence[ModelSpec], names: Sequence[str], *, kind: str,
               settings: Optional[Settings] = None, out_dir: Optional[str | Path] = None, overwrite: bool = False,
               with_val_loss: bool = True, dataset_dir: Optional[str | Path] = None,
               loader: Optional[ModelLoader] = None,
               progress: Optional[Callable[[str, int, int], None]] = None,
               on_stage: Optional[Callable[[str, str], None]] = None,
               budget: Optional[Budget] = None) -> Manifest:
    """Generate the same song with each model spec; files `<names[i]>.<ext>`; manifest + summary.

    The base and one LoRA (A/B, or a strength sweep) are generated in one batch (ModelLoader.together,
    the same tokens as one pass each); a full checkpoint gets a pass of its own. `on_stage(stage, name)`
    hears the steps that draw no frames ("data": the validation songs are read, "load": a model is read,
    "val": its validation loss is computed, "decode": audio is decoded and written), so a caller can say
    what is happening between the frame counts of `progress`. `budget` (default: the config's
    generation bounds) is checked at every frame, validation batch and stage; a job it stops raises
    core.runs.budget.TimeLimit and leaves its manifest marked "stopped", never "done"."""
    budget = budget or Budget.from_section(cfg.generation, kind, "generation")

    def stage(code: str, name: str) -> None:
        budget.enter(code, name)
        if on_stage:
            on_stage(code, name)

    from core.codec import get_codec

    settings = settings or settings_from_config(cfg)
    loader = loader or ModelLoader(cfg)
    codec = get_codec(cfg)
    out = _out_dir(cfg, kind, out_dir, overwrite)
    man = Manifest(kind=kind, out_dir=str(out))
    try:
        _run(cfg, specs, names, man, settings, loader, codec, budget, stage, progress,
             dataset_dir if with_val_loss else False)
    except BaseException as err:  # a stopped job's files are kept, but never presented as a finished one
        man.status, man.error = "stopped", str(err) or type(err).__name__
        with contextlib.suppress(OSError):  # a full disk must not hide the job's own error
            _write_manifest(out, man)
        raise
    finally:
        loader.release()  # the caller's base model is plain again
    man.status = "done"
    _write_manifest(out, man)
    return man


def _run(cfg, specs, names, man: Manifest, settings: Settings, loader: ModelLoader, codec, budget: Budget,
         stage: Callable[[str, str], None], progress, dataset_dir) -> None:
    """run_models' work, filling `man` (dataset_dir False: no validation loss)."""
    if dataset_dir is False:
        split, ds_dir, why, cause = None, None, "not asked for", None
    else:
        stage("data", str(dataset_dir or ""))
        split, ds_dir, why, cause = _validation(cfg, dataset_dir)
    stage("load", str(loader.base_dir.name))
    base = loader.base()
    prompt = load_prompt(settings, codec, base)
    frames = frames_for(base, settings, cfg.generation.max_seconds)
    budget.size(generation_bound(base, base.pattern.num_steps(frames), len(specs), str(loader.device)))
    shared = settings.to_dict()
    shared.update({"max_frames": frames,
                   "base_model": str(loader.base_dir), "codec": getattr(codec, "id", None),
                   "codec_is_demo": bool(getattr(codec, "is_demo", False)),
                   "base_is_demo": bool(getattr(base, "is_demo", False)), "device": str(loader.device),
                   "dtype": str(loader.dtype).replace("torch.", "")})
    man.settings = shared
    man.validation = {"dataset": ds_dir, "songs": len(split) if split is not None else 0, "note": why, "cause": cause}
    out = Path(man.out_dir)

    def frames_cb(name: str) -> Callable[[int, int], None]:  # every frame checks the budget, then reports
        return budget.steps((lambda d, t: progress(name, d, t)) if progress else None)

    val_cache: dict[tuple, dict] = {}
    done: list[Optional[tuple]] = [None] * len(specs)
    stage("load", " + ".join(names))
    with loader.together(list(specs)) as batch:
        if batch is not None:
            label = " + ".join(names)
            stage("frames", label)
            codes, seconds = generate_together(batch[0], batch[1], settings, prompt, cfg.generation.max_seconds,
                                               frames_cb(label))
            done = [(c, seconds) for c in codes]
    man.settings["one_pass"] = batch is not None
    for spec, name, generated in zip(specs, names, done):
        info = spec.describe()
        if generated is None:
            stage("load", name)
        with loader.use(spec) as model:
            if generated is None:
                stage("frames", name)
            res = generate_song(model, codec, settings, out, name, prompt=prompt, model_info=info,
                                max_seconds=cfg.generation.max_seconds, progress=frames_cb(name), generated=generated,
                                extra={"kind": man.kind, "base_model": str(loader.base_dir)},
                                before_decode=lambda _n=name: stage("decode", _n))
            if split is not None:
                key = (spec.checkpoint, spec.strength if spec.checkpoint else None)
                if key not in val_cache:
                    stage("val", name)
                    val_cache[key] = validation_loss(model, split, max_frames=cfg.training.max_frames,
                                                     batch_size=cfg.training.batch_size, seed=cfg.training.seed,
                                                     on_batch=budget.steps())
                v = val_cache[key]
                res.val_loss, res.val_loss_per_stream = v["val_loss"], v["per_stream"]
                man.validation["max_frames"] = v["max_frames"]
                rec = json.loads((out / res.settings_file).read_text(encoding="utf-8"))
                rec["song"] = res.to_dict()
                (out / res.settings_file).write_text(json.dumps(rec, indent=2, ensure_ascii=False), encoding="utf-8")
        man.items.append(res)
        _write_manifest(out, man)  # after each file, so a long run can be listened to as it goes


def generate_single(cfg, checkpoint: Optional[str] = None, *, strength: float = 1.0, **kw) -> Manifest:
    """One song with the base model (or a checkpoint): `<label>_seed<S>.<ext>`."""
    settings = kw.pop("settings", None) or settings_from_config(cfg)
    spec = ModelSpec("base" if checkpoint is None else checkpoint_label(checkpoint), checkpoint, strength)
    return run_models(cfg, [spec], [f"{spec.label}_seed{settings.seed}"], kind="single", settings=settings, **kw)


def ab_compare(cfg, checkpoint_b: str, checkpoint_a: Optional[str] = None, *, strength: float = 1.0,
               **kw) -> Manifest:
    """A (base, or checkpoint_a) vs B (checkpoint_b) with the same lyrics, description, prompt and seed."""
    settings = kw.pop("settings", None) or settings_from_config(cfg)
    la = "base" if checkpoint_a is None else checkpoint_label(checkpoint_a)
    lb = checkpoint_label(checkpoint_b)
    if la == lb and checkpoint_a is not None:  # two runs' step-40: add the run names
        la = slugify(f"{Path(checkpoint_a).parent.parent.name}-{la}")
        lb = slugify(f"{Path(checkpoint_b).parent.parent.name}-{lb}")
    specs = [ModelSpec(la, checkpoint_a, 1.0), ModelSpec(lb, checkpoint_b, strength)]
    names = [f"A_{la}_seed{settings.seed}", f"B_{lb}_seed{settings.seed}"]
    return run_models(cfg, specs, names, kind="ab", settings=settings, **kw)


def strength_sweep(cfg, checkpoint: str, strengths: Optional[Sequence[float]] = None, **kw) -> Manifest:
    """One LoRA checkpoint at several strengths (0 = base) with one seed: `strength-<s>_seed<S>.<ext>`."""
    from core.export.merge import checkpoint_kind

    if checkpoint_kind(checkpoint) != "lora":
        raise GenerationError(f"{checkpoint} is a full checkpoint; a strength sweep needs a LoRA checkpoint")
    settings = kw.pop("settings", None) or settings_from_config(cfg)
    strengths = list(strengths if strengths is not None else cfg.generation.lora_scales)
    if not strengths:
        raise GenerationError("give at least one strength, e.g. 0, 0.5, 1")
    label = checkpoint_label(checkpoint)
    specs = [ModelSpec(f"{label}@{s:g}", checkpoint, float(s)) for s in strengths]
    names = [f"strength-{s:g}_seed{settings.seed}" for s in strengths]
    return run_models(cfg, specs, names, kind="sweep", settings=settings, **kw)


