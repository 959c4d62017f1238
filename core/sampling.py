"""How a song is drawn from the model: the sampling settings, their defaults and their bounds, once.

The config's generation section, generation (core.export.generate.Settings, core.model.generation's
keyword defaults), the training samples and the CLI's flags all take them from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# what a generation renders: the mix, the vocal or the accompaniment stream, or both stems apart
GEN_TYPES = ("mixed", "vocal", "bgm", "separate")


def _bounded(default: Any, **bounds: float) -> Any:
    """A field whose bounds (pydantic's names: gt, ge, le) travel with it in its metadata."""
    return field(default=default, metadata=bounds)


@dataclass
class Sampling:
    cfg_coef: float = 1.5  # classifier-free guidance: uncond + cfg_coef * (cond - uncond)
    temperature: float = _bounded(1.0, gt=0)
    top_k: int = _bounded(50, ge=0)  # 0: no top-k cut
    top_p: float = _bounded(0.0, ge=0, le=1)  # > 0: nucleus sampling instead of top-k
    record_window: int = _bounded(50, ge=0)  # frames the repetition penalty looks back over

    def kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments of core.model.generation.generate(_batch)."""
        return {f.name: getattr(self, f.name) for f in fields(Sampling)}

    def problems(self) -> list[str]:
        """Each setting outside its bounds, named with what is accepted."""
        out = []
        for f in fields(Sampling):
            v, b = getattr(self, f.name), f.metadata
            if ("gt" in b and not v > b["gt"]) or ("ge" in b and not v >= b["ge"]) or ("le" in b and not v <= b["le"]):
                rule = ", ".join(f"{'>' if k == 'gt' else '>=' if k == 'ge' else '<='} {x:g}" for k, x in b.items())
                out.append(f"{f.name} = {v!r} must be {rule}")
        return out


SAMPLING = Sampling()  # the defaults


def bounds(name: str) -> dict[str, float]:
    """The bounds of setting `name` (for a pydantic Field)."""
    return dict(next(f for f in fields(Sampling) if f.name == name).metadata)


def from_section(section: Any) -> Sampling:
    """The sampling settings of any object that has them as attributes (the config's generation section)."""
    return Sampling(**{f.name: getattr(section, f.name) for f in fields(Sampling)})
