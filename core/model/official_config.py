"""Reading SongGeneration's `config.yaml`: interpolations, the runtime root, the v1/v2 flag.

Official configs use two OmegaConf resolvers: `${eval:...}` (arithmetic such as
`${prompt_len}*${audio_tokenizer_frame_rate}+2`) and `${load_yaml:conf/vocab.yaml}` (relative to
the runtime root). `eval` is resolved as arithmetic only, never as Python.
"""
from __future__ import annotations

import ast
import math
import operator
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf

from core.errors import CheckpointError  # noqa: F401 - raised here, imported from here by model code

# Upstream's rule (generate.py): these folder names are v1, any other name is v2.
V1_FOLDER_NAMES = ("songgeneration_base", "songgeneration_base_new", "songgeneration_base_full", "songgeneration_large")

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNOPS = {ast.UAdd: operator.pos, ast.USub: operator.neg}


# `${eval:...}` bounds: official configs multiply a few small numbers; anything past these is an attack
# (an expression whose value takes minutes and gigabytes to compute), refused before it is computed.
EVAL_MAX_CHARS = 200
EVAL_MAX_MAGNITUDE = 2 ** 63
LOAD_YAML_MAX_BYTES = 4 * 2**20


def safe_arithmetic(expr: str) -> int | float:
    """Evaluate `expr` as arithmetic on numbers only (what the official `${eval:...}` is used for), each
    value within +-EVAL_MAX_MAGNITUDE: a power is checked from logarithms before it is computed."""
    text = str(expr).strip()
    if len(text) > EVAL_MAX_CHARS:
        raise ValueError(f"${{eval:...}} of {len(text)} characters; at most {EVAL_MAX_CHARS} are allowed")

    def bounded(v: int | float) -> int | float:
        if not (abs(v) <= EVAL_MAX_MAGNITUDE):  # also catches NaN
            raise ValueError(f"${{eval:{text}}}: a value passes {EVAL_MAX_MAGNITUDE:.0e}")
        return v

    def ev(node: ast.AST) -> int | float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return bounded(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or (
                    abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > 63)):
                raise ValueError(f"exponent too large in ${{eval:{text}}}")
            return bounded(_BINOPS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](ev(node.operand))
        raise ValueError(f"only arithmetic is allowed in ${{eval:...}}, got {text[:80]!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as err:
        raise ValueError(f"cannot parse ${{eval:{text[:80]}}}: {type(err).__name__}") from None
    return ev(tree)


_resolver_root = threading.local()


def _load_yaml_resolver(rel: str) -> Any:
    """`${load_yaml:conf/vocab.yaml}`: a file inside the runtime root only (a model folder from elsewhere
    must not read /etc/passwd or a token into its config, or into an error message). The path must stay
    inside the root as written (no absolute path, no `..` out). Links are followed in the runtime's own
    folders (a checkout whose conf/ is linked elsewhere is common), but not out of the checkpoint folder: that
    folder is what a downloaded or shared model brings, so a link in it must not lead outside it."""
    root = getattr(_resolver_root, "path", None)
    if root is None:
        raise CheckpointError(f"${{load_yaml:{rel}}}: no runtime root is set; it is only read with its config")
    lexical_root = Path(os.path.abspath(root))
    lexical = Path(os.path.normpath(lexical_root / str(rel)))
    if lexical_root not in lexical.parents:
        raise CheckpointError(f"${{load_yaml:{rel}}}: only files inside the runtime root {lexical_root} can be loaded")
    path = Path(os.path.realpath(lexical))
    ckpt = getattr(_resolver_root, "ckpt", None)
    if ckpt is not None:
        lexical_ckpt = Path(os.path.abspath(ckpt))
        real_ckpt = Path(os.path.realpath(ckpt))
        if (lexical_ckpt in lexical.parents or real_ckpt in path.parents) and real_ckpt not in path.parents:
            raise CheckpointError(f"${{load_yaml:{rel}}}: only files inside the runtime root {lexical_root} can be "
                                  "loaded (a link in the checkpoint folder leads out of it)")
    if not path.is_file():
        raise CheckpointError(f"${{load_yaml:{rel}}}: {path} does not exist (runtime root {root})")
    if path.stat().st_size > LOAD_YAML_MAX_BYTES:
        raise CheckpointError(f"${{load_yaml:{rel}}}: {path.name} is over {LOAD_YAML_MAX_BYTES // 2**20} MiB")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:  # its text is not quoted back
        raise CheckpointError(f"${{load_yaml:{rel}}}: {path.name} is not valid YAML ({type(err).__name__})") from None


# omegaconf 2.4 renamed the registration call; 2.3 only has the old name.
_register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
_register("eval", safe_arithmetic, replace=True)
_register("load_yaml", _load_yaml_resolver, replace=True)


def runtime_candidates(ckpt_dir: Optional[Path], explicit: Optional[str | Path]) -> list[Path]:
    """Where a runtime root is looked for, in order: the argument, the checkpoint folder and its parents, cwd."""
    out: list[Path] = []
    if explicit:
        out.append(Path(explicit).expanduser().resolve())
    if ckpt_dir is not None:
        d = Path(ckpt_dir).resolve()
        out.extend([d, *d.parents])
    out.append(Path.cwd().resolve())
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def is_runtime_root(path: Path, token_paths: list[str]) -> bool:
    return (path / "conf" / "vocab.yaml").is_file() and all((path / t / "vocab.json").is_file() for t in token_paths)


def find_runtime_root(ckpt_dir: Optional[Path], explicit: Optional[str | Path], token_paths: list[str]) -> Path:
    candidates = runtime_candidates(ckpt_dir, explicit)
    if explicit and not is_runtime_root(candidates[0], token_paths):
        # An explicit root that does not hold the files is a mistake worth naming on its own.
        missing = [str(candidates[0] / t / "vocab.json") for t in token_paths] + [str(candidates[0] / "conf/vocab.yaml")]
        raise CheckpointError(
            f"runtime root {candidates[0]} does not hold the tokenizer and tags this config needs "
            f"(looked for: {', '.join(missing)}). Point runtime_root / paths.runtime_path at the SongGeneration "
            "folder that contains third_party/ and conf/.")
    for cand in candidates:
        if is_runtime_root(cand, token_paths):
            return cand
    looked = "\n  ".join(str(c) for c in candidates)
    raise CheckpointError(
        f"no SongGeneration runtime root found: need a folder with {' and '.join(t + '/vocab.json' for t in token_paths)} "
        f"and conf/vocab.yaml. Looked in:\n  {looked}\nSet paths.runtime_path (or runtime_root=) to the SongGeneration "
        "checkout that holds third_party/ and conf/.")


class ModelTiming:
    """The model's timing and tags, read from the `config: OfficialConfig` of the object that mixes this in
    (CheckpointInfo, data.ModelLimits), so the values are written once: in OfficialConfig."""
    config: "OfficialConfig"

    max_dur = property(lambda self: float(self.config.max_dur))
    min_dur = property(lambda self: float(self.config.min_dur))
    prompt_len = property(lambda self: float(self.config.prompt_len))
    frame_rate = property(lambda self: int(self.config.frame_rate))
    prompt_frames = property(lambda self: int(self.config.prompt_frames))
    max_frames = property(lambda self: int(self.config.max_frames))
    delays = property(lambda self: list(self.config.delays))
    structure_tags = property(lambda self: tuple(self.config.structure_tags))

    def timing_dict(self) -> dict:
        return {"max_dur": self.max_dur, "min_dur": self.min_dur, "prompt_len": self.prompt_len, "frame_rate": self.frame_rate,
                "prompt_frames": self.prompt_frames, "max_frames": self.max_frames}


@dataclass
class OfficialConfig:
    """The resolved fields of an official config.yaml that the LM needs, plus the raw text."""

    raw_text: str
    resolved: dict[str, Any]
    runtime_root: Path
    path: Optional[Path] = None

    # LM dims
    dim: int = 0
    intermediate_size: int = 0
    num_heads: int = 0
    num_layers: int = 0
    num_layers_sub: int = 0
    code_depth: int = 3
    code_size: int = 16384
    max_position_embeddings: int = 0
    max_position_embeddings_sub: int = 0
    rope_theta: float = 0.0
    rope_theta_sub: float = 0.0
    norm_first: bool = True
    delays: list[int] = field(default_factory=list)
    # conditioning
    prepend: list[str] = field(default_factory=list)
    lyric_token_path: str = ""
    lyric_max_len: int = 0
    structure_tags: list[str] = field(default_factory=list)
    desc_token_path: str = ""
    desc_max_len: int = 0
    prompt_max_len: int = 0
    cfg_dropout: float = 0.0
    cfg_coef: float = 1.5
    attribute_dropout: dict[str, float] = field(default_factory=dict)
    # timing
    max_dur: float = 0.0
    min_dur: float = 0.0      # shortest training crop (the reference's data filter; 0 when the config has none)
    prompt_len: float = 0.0
    frame_rate: int = 25
    sample_rate: int = 48000

    @property
    def prompt_frames(self) -> int:
        return int(round(self.prompt_len * self.frame_rate))

    @property
    def max_frames(self) -> int:
        return int(round(self.max_dur * self.frame_rate))

    @property
    def layer_parameters(self) -> int:
        """Parameters of one Llama decoder layer (either stack): attention, gated MLP, two RMSNorms."""
        D, F = self.dim, self.intermediate_size
        return 4 * D * D + 3 * D * F + 2 * D


def _get(cfg: dict[str, Any], dotted: str, source: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise CheckpointError(f"{source}: missing config key '{dotted}' (an official SongGeneration config.yaml has it)")
        node = node[part]
    return node


def read_official_config(config_path: Path, runtime_root: Optional[str | Path] = None,
                         text: Optional[str] = None) -> OfficialConfig:
    config_path = Path(config_path)
    if text is None:
        if not config_path.is_file():
            raise CheckpointError(f"{config_path} not found: a checkpoint folder needs config.yaml and model.pt")
        text = config_path.read_text(encoding="utf-8")
    src = str(config_path)
    try:
        raw = OmegaConf.create(yaml.safe_load(text))
    except yaml.YAMLError as err:
        raise CheckpointError(f"{src}: not valid YAML: {err}") from None
    except Exception as err:  # omegaconf's grammar errors for malformed interpolations
        raise CheckpointError(f"{src}: cannot parse an interpolation: {err}") from None
    if not isinstance(raw, DictConfig):
        raise CheckpointError(f"{src}: expected a mapping at the top level")

    def plain(key: str) -> Any:
        node = OmegaConf.select(raw, key, throw_on_missing=False, throw_on_resolution_failure=False)
        return node

    # Token paths are plain strings: read them before resolving so the root can be found first.
    token_paths = []
    for key in ("conditioners.description.QwTokenizer.token_path", "conditioners.type_info.QwTextTokenizer.token_path"):
        if OmegaConf.select(raw, key) is None:
            raise CheckpointError(f"{src}: missing config key '{key}' (an official SongGeneration config.yaml has it)")
        token_paths.append(str(plain(key)))
    root = find_runtime_root(config_path.parent, runtime_root, sorted(set(token_paths)))

    _resolver_root.path, _resolver_root.ckpt = root, config_path.parent
    try:
        resolved = OmegaConf.to_container(raw, resolve=True)
    except CheckpointError:
        raise
    except Exception as err:  # omegaconf wraps resolver errors
        raise CheckpointError(f"{src}: cannot resolve an interpolation: {err}") from None
    finally:
        _resolver_root.path = _resolver_root.ckpt = None
    assert isinstance(resolved, dict)

    g = lambda k: _get(resolved, k, src)  # noqa: E731
    lm = g("lm")
    if g("lm.lm_type") != "Llama":
        raise CheckpointError(f"{src}: lm.lm_type is {lm.get('lm_type')!r}; only 'Llama' (all released models) is supported")
    att = g("attribute_dropout")
    cfg = OfficialConfig(
        raw_text=text, resolved=resolved, runtime_root=root, path=config_path,
        dim=int(g("lm.dim")), intermediate_size=int(g("lm.intermediate_size")), num_heads=int(g("lm.num_heads")),
        num_layers=int(g("lm.num_layers")), num_layers_sub=int(g("lm.num_layers_sub")),
        code_depth=int(g("lm.code_depth")), code_size=int(g("lm.code_size")),
        max_position_embeddings=int(g("lm.max_position_embeddings")),
        max_position_embeddings_sub=int(g("lm.max_position_embeddings_sub")),
        rope_theta=float(g("lm.rope_theta")), rope_theta_sub=float(g("lm.rope_theta_sub")),
        norm_first=bool(lm.get("norm_first", False)),
        delays=[int(d) for d in g("codebooks_pattern.delay.delays")],
        prepend=list(g("fuser.prepend")),
        lyric_token_path=token_paths[0], lyric_max_len=int(g("conditioners.description.QwTokenizer.max_len")),
        structure_tags=list(g("conditioners.description.QwTokenizer.add_token_list")),
        desc_token_path=token_paths[1], desc_max_len=int(g("conditioners.type_info.QwTextTokenizer.max_len")),
        prompt_max_len=int(g("conditioners.prompt_audio.qt_embedding.max_len")),
        cfg_dropout=float(g("classifier_free_guidance.training_dropout")),
        cfg_coef=float(g("classifier_free_guidance.inference_coef")),
        attribute_dropout={
            "description": float(att.get("text", {}).get("description", 0.0)),
            "type_info": float(att.get("text", {}).get("type_info", 0.0)),
            "prompt_audio": float(att.get("audio", {}).get("prompt_audio", 0.0)),
        },
        max_dur=float(g("max_dur")), min_dur=float(resolved.get("min_dur") or 0.0), prompt_len=float(g("prompt_len")),
        frame_rate=int(g("audio_tokenizer_frame_rate")), sample_rate=int(resolved.get("sample_rate", 48000)),
    )
    if cfg.code_size != 16384:
        raise CheckpointError(f"{src}: lm.code_size is {cfg.code_size}; SongGeneration hard-codes 16384 (EOS 16384, empty 16385)")
    if len(cfg.delays) != cfg.code_depth:
        raise CheckpointError(f"{src}: codebooks_pattern.delay.delays has {len(cfg.delays)} entries, lm.code_depth is {cfg.code_depth}")
    if cfg.dim % cfg.num_heads:
        raise CheckpointError(f"{src}: lm.dim {cfg.dim} is not divisible by lm.num_heads {cfg.num_heads}")
    if sorted(cfg.prepend) != ["description", "prompt_audio", "type_info"]:
        raise CheckpointError(f"{src}: fuser.prepend must list description, prompt_audio and type_info, got {cfg.prepend}")
    return cfg


def version_from_folder(ckpt_dir: Path) -> str:
    return "v1" if Path(ckpt_dir).resolve().name in V1_FOLDER_NAMES else "v2"
