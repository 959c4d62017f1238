"""Publish a finetune to the Hugging Face Hub: the LoRA adapter, the merged model, test songs, a model
card, and (optionally) the prepared dataset in its own dataset repo (`DatasetDict.push_to_hub`: parquet
shards per split under data/, so the Hub viewer and `datasets.load_dataset` read it).

    python -m core push --config cfg.yaml --repo-id you/my-songgen-lora --adapter <run>/checkpoints/step-N
                        [--merged <export dir>] [--samples <generation dir>] [--dataset [DIR]]
                        [--public] [--update] [--token-stdin]

Repo layout: `README.md` (the card), `adapter/` (adapter_config.json + adapter_model.safetensors,
loadable with peft `subfolder="adapter"`), `merged/` (config.yaml + model.pt, the official layout),
`samples/` (the audio of an A/B or sweep folder, embedded in the card), `training_config.yaml`
(the run's training and LoRA settings; no local paths). Repos are private unless asked otherwise.

The token comes from the one-time `token` argument (the UI field; `--token-stdin` on the command
line), else the environment (`HF_TOKEN`), else the Hugging Face login (`huggingface_hub.get_token()`).
It is held in memory only: never written to the workspace, a config, a log or a message (every
message that leaves this module is passed through `mask`). Errors say what went wrong in words:
offline (`HF_HUB_OFFLINE` or no connection), a bad token (401), a name that belongs to someone
else or already exists (403 / 409).
"""
from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from core.errors import StudioError
from core.export.card_samples import card_samples, val_losses
from core.runs.store import run_config_for_checkpoint

UPSTREAM_LICENSE = "https://github.com/tencent-ailab/SongGeneration/blob/main/LICENSE"
UPSTREAM_REPO = "https://github.com/tencent-ailab/SongGeneration"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
MERGED_FILES = ("config.yaml", "model.pt")
# Per song, what the published preparation report keeps: never its local source line, file paths, or the
# text read from its files (a rejected song's "lyrics" may be whatever file a link pointed at).
PUBLIC_REPORT_KEYS = ("idx", "status", "reasons", "duration_s", "split")


class HubError(StudioError, RuntimeError):
    """A push that cannot go ahead; the message says why and what to do (never contains the token)."""
    code = "hub"


# ---------------------------------------------------------------------------------------------
# Token, endpoint, errors
# ---------------------------------------------------------------------------------------------
def resolve_token(token: Optional[str] = None) -> tuple[str, str]:
    """(token, where it came from: "argument" | "environment (HF_TOKEN)" | "Hugging Face login")."""
    if token and token.strip():
        return token.strip(), "argument"
    env = os.environ.get("HF_TOKEN")
    if env and env.strip():
        return env.strip(), "environment (HF_TOKEN)"
    from huggingface_hub import get_token

    try:
        saved = get_token()
    except Exception:  # noqa: BLE001 - a broken login store is the same as no login here
        saved = None
    if saved:
        return saved, "Hugging Face login"
    raise HubError("no Hugging Face token: paste a write token in the token field (used once, never saved), "
                   "set HF_TOKEN in the environment, or run `hf auth login`", code="hub_no_token")


def mask(text: Any, token: Optional[str]) -> str:
    """`text` with every occurrence of the token (and of any hf_ token-looking string) hidden."""
    import re

    s = str(text)
    if token:
        s = s.replace(token, "hf_***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", s)


def hub_endpoint(endpoint: Optional[str] = None) -> str:
    """The Hub URL: the argument, else $HF_ENDPOINT read now (so it may be set after import), else the default."""
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return bool(constants.HF_HUB_OFFLINE) or (flag or "").upper() in ("1", "ON", "YES", "TRUE")


def _explain(err: BaseException, token: Optional[str], repo_id: Optional[str], endpoint: str) -> HubError:
    """A HubError in words for any failure of a Hub call."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, HubError):
        return HubError(mask(err, token))
    if isinstance(err, OfflineModeIsEnabled):
        return HubError("offline: HF_HUB_OFFLINE is set, so nothing can be pushed. Unset it and try again.")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, HfHubHTTPError) and status is not None:
        if status == 401:
            return HubError("the Hugging Face token was refused (401): it is invalid or expired. Create a token with "
                            "write access at https://huggingface.co/settings/tokens")
        if status == 403:
            return HubError(f"no write access to {repo_id} (403): the name belongs to another user or organisation, or "
                            "the token is read-only. Use your own namespace or a token with write access.")
        if status == 409:
            return HubError(f"{repo_id} already exists (409). Pick another name, or pass --update to add a new commit "
                            "to your existing repo.")
        return HubError(mask(f"the Hub answered {status}: {err}", token))
    name = type(err).__name__
    if "Connect" in name or "Timeout" in name or isinstance(err, (ConnectionError, OSError)) and not \
            isinstance(err, FileNotFoundError):
        return HubError(f"cannot reach the Hub at {endpoint} ({name}): no network connection or the server is down. "
                        "Check your connection (or HF_ENDPOINT) and try again.")
    return HubError(mask(f"push failed: {name}: {err}", token))


# ---------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------
CARD_TEMPLATE = Path(__file__).resolve().parents[2] / "assets" / "model_card.md"
TRAINING_KEYS = ("type", "epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate",
                 "warmup_steps", "weight_decay", "max_grad_norm", "mixed_precision", "max_frames", "seed")
LORA_KEYS = ("r", "alpha", "dropout", "target_modules", "stacks")
SAMPLE_SETTING_KEYS = ("lyrics", "description", "seed", "gen_type", "cfg_coef", "temperature", "top_k")


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def build_model_card(*, repo_id: str, base_model: str, base_model_id: Optional[str], training: dict[str, Any],
                     lora: Optional[dict[str, Any]], dataset: dict[str, Any], val_before: Optional[float],
                     val_after: Optional[float], samples: list[dict[str, Any]], has_adapter: bool, has_merged: bool,
                     merged_info: Optional[dict[str, Any]], demo: bool, dataset_repo_id: Optional[str],
                     endpoint: str, sample_settings: Optional[dict[str, Any]] = None):
    """-> huggingface_hub.ModelCard: metadata (base model, licence, tags, losses) + the body rendered from
    assets/model_card.md (a jinja template, `ModelCard.from_template`)."""
    from huggingface_hub import ModelCard, ModelCardData

    tags = ["songgeneration", "levo", "music", "song-generation", "songgen-studio"]
    if has_adapter:
        tags += ["lora", "peft"]
    if demo:
        tags.append("demo")
    data = ModelCardData(
        base_model=base_model_id, license="other", license_name="songgeneration-license",
        license_link=UPSTREAM_LICENSE, library_name="peft" if has_adapter and not has_merged else None,
        pipeline_tag="text-to-audio", tags=tags, datasets=[dataset_repo_id] if dataset_repo_id else None,
        songgen_studio={"base_model": base_model, "training_type": training.get("type"),
                        "val_loss_before": val_before, "val_loss_after": val_after,
                        "dataset_songs": dataset.get("songs"), "demo": demo},
    )
    settings = [(k, training[k]) for k in TRAINING_KEYS if training.get(k) is not None]
    if lora and training.get("type") == "lora":
        settings += [(f"lora.{k}", lora[k]) for k in LORA_KEYS if k in lora]
    used = ", ".join(f"{k} `{sample_settings[k]}`" for k in SAMPLE_SETTING_KEYS
                     if sample_settings and sample_settings.get(k) is not None)
    return ModelCard.from_template(
        data, template_path=str(CARD_TEMPLATE), name=repo_id.split("/")[-1], repo_id=repo_id, demo=demo,
        upstream_repo=UPSTREAM_REPO, base_label=base_model_id or base_model, merged_info=merged_info,
        has_adapter=has_adapter, has_merged=has_merged, settings=settings,
        dataset={k: dataset.get(k) for k in ("songs", "train", "validation", "audio_seconds", "codec")},
        dataset_repo_id=dataset_repo_id, endpoint=endpoint, val_before=_fmt(val_before), val_after=_fmt(val_after),
        samples=[{"label": x["label"], "path": x["path"], "val_loss": x.get("val_loss")} for x in samples],
        sample_settings=used)


# ---------------------------------------------------------------------------------------------
# Gathering what to push
# ---------------------------------------------------------------------------------------------
def _adapter_files(adapter_dir: Path) -> list[Path]:
    files = [adapter_dir / f for f in ADAPTER_FILES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise HubError(f"{adapter_dir} is not a LoRA checkpoint: {', '.join(missing)} missing")
    return files


def _merged_files(merged_dir: Path) -> list[Path]:
    files = [merged_dir / f for f in MERGED_FILES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise HubError(f"{merged_dir} is not an exported model: {', '.join(missing)} missing; run "
                       "`python -m core merge` first")
    return files


def _dataset_summary(dataset_dir: Optional[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if dataset_dir is None:
        return out
    rep = dataset_dir / "report.json"
    if rep.is_file():
        try:
            s = json.loads(rep.read_text(encoding="utf-8")).get("summary", {})
            out.update({"songs": s.get("prepared"), "train": s.get("train"), "validation": s.get("validation"),
                        "audio_seconds": s.get("audio_seconds"), "codec": s.get("codec")})
        except (OSError, json.JSONDecodeError, AttributeError):
            pass
    if out.get("songs") is None:
        info = dataset_dir / "dataset_dict.json"
        if info.is_file():
            try:
                from datasets import load_from_disk
                dd = load_from_disk(str(dataset_dir))
                out.update({k: len(dd[k]) for k in dd if k in ("train", "validation")})
                out["songs"] = sum(len(dd[k]) for k in dd)
            except Exception:  # noqa: BLE001 - the summary is informational
                pass
    return out


def _dataset_for_push(dataset_dir: Path):
    """The prepared DatasetDict (plain python format, so it goes to parquet as saved) and the side files
    (report.json, manifest) that go next to it so a reader sees how each song was prepared."""
    if not (dataset_dir / "dataset_dict.json").is_file():
        raise HubError(f"{dataset_dir} is not a prepared dataset (no dataset_dict.json)")
    from datasets import load_from_disk

    dd = load_from_disk(str(dataset_dir))
    side = [(public_report(dataset_dir / "report.json"), "report.json")] if (dataset_dir / "report.json").is_file() else []
    return dd, side


def _no_folders(value: Any) -> Any:
    """Reasons name files; published, they keep the file name and lose the local folders above it."""
    if isinstance(value, list):
        return [_no_folders(v) for v in value]
    return _FOLDERS.sub("", value) if isinstance(value, str) else value


_FOLDERS = re.compile(r"(?:~|\.{1,2})?(?:/[^/\s'\"(),;]+)+/")


def public_report(path: Path) -> bytes:
    """The preparation report as it may be published with the dataset: the summary counts and, per song,
    only PUBLIC_REPORT_KEYS (the dataset itself carries the lyrics and descriptions it was trained on)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        songs = [{k: _no_folders(e[k]) for k in PUBLIC_REPORT_KEYS if k in e}
                 for e in doc.get("songs", []) if isinstance(e, dict)]
        summary = {k: v for k, v in (doc.get("summary") or {}).items() if isinstance(v, (int, float, str, bool))}
    except (OSError, ValueError, AttributeError, RecursionError) as err:
        raise HubError(f"{path}: the preparation report cannot be read ({type(err).__name__}); prepare the "
                       "dataset again") from None
    return json.dumps({"summary": summary, "songs": songs}, indent=2, ensure_ascii=False).encode("utf-8")


@contextmanager
def _datasets_endpoint(endpoint: str):
    """datasets reads its Hub URL from `datasets.config.HF_ENDPOINT`, frozen at import and with no argument
    on push_to_hub; point it at our endpoint for the push only."""
    from datasets import config as ds_config

    old = ds_config.HF_ENDPOINT
    ds_config.HF_ENDPOINT = endpoint
    try:
        yield
    finally:
        ds_config.HF_ENDPOINT = old


def _training_yaml(cfg) -> str:
    d = cfg.to_dict()
    keep = {"training": d["training"], "lora": d["lora"],
            "data": {k: v for k, v in d["data"].items() if k in ("codec", "separation", "bgm_mode", "val_fraction")}}
    keep["training"] = {k: v for k, v in keep["training"].items() if k != "dataset_dir"}
    return yaml.safe_dump(keep, sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------------
# Push
# ---------------------------------------------------------------------------------------------
@dataclass
class PushResult:
    repo_id: str
    url: str
    private: bool
    commit: Optional[str]
    files: list[str] = field(default_factory=list)
    dataset_repo_id: Optional[str] = None
    dataset_url: Optional[str] = None
    dataset_files: list[str] = field(default_factory=list)
    token_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ensure_repo(api, repo_id: str, repo_type: str, private: bool, update: bool, token: str, user: dict,
                 endpoint: str) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    namespace = repo_id.split("/")[0]
    mine = {user.get("name")} | {o.get("name") for o in user.get("orgs", []) if isinstance(o, dict)}
    if namespace not in mine:
        yours = ", ".join(sorted(n for n in mine if n))
        raise HubError(f"{repo_id}: the namespace '{namespace}' is not yours ({yours}); "
                       f"use {user.get('name')}/<name> or an organisation you belong to", code="hub_not_yours",
                       repo=repo_id, namespace=namespace, yours=yours, user=str(user.get("name")))
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=False)
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status == 409 and update:
            return
        raise _explain(err, token, repo_id, endpoint) from None


def push(cfg=None, *, repo_id: Optional[str] = None, adapter_dir: Optional[str | Path] = None,
         merged_dir: Optional[str | Path] = None, samples_dir: Optional[str | Path] = None,
         dataset_dir: Optional[str | Path] = None, push_dataset: Optional[bool] = None,
         dataset_repo_id: Optional[str] = None, private: Optional[bool] = None, update: bool = False,
         token: Optional[str] = None, endpoint: Optional[str] = None, commit_message: Optional[str] = None,
         val_loss_before: Optional[float] = None, val_loss_after: Optional[float] = None,
         log: Optional[Callable[[str], None]] = None) -> PushResult:
    """Create the repo (private by default) and upload adapter / merged model / samples / card in one commit;
    optionally the prepared dataset to a dataset repo. Returns what was pushed; raises HubError in words."""
    from core.config import StudioConfig

    cfg = cfg or StudioConfig()
    hc = cfg.hub
    say = log or (lambda msg: None)
    repo_id = repo_id or hc.repo_id
    if not repo_id:
        raise HubError("no repo name: give --repo-id (or hub.repo_id), e.g. your-name/songgen-my-style")
    private = hc.private if private is None else private
    adapter_dir = Path(adapter_dir).expanduser() if adapter_dir else None
    merged_dir = Path(merged_dir).expanduser() if merged_dir else None
    samples = Path(samples_dir).expanduser() if samples_dir else None
    push_dataset = hc.push_dataset if push_dataset is None else push_dataset
    if adapter_dir is None and merged_dir is None:
        raise HubError("nothing to push: give a LoRA checkpoint (--adapter) and/or a merged export (--merged)")
    # Everything local is checked before the network is touched.
    uploads, merged_info = _model_uploads(adapter_dir, merged_dir)
    card_items, sample_rows, sample_files, sample_settings = card_samples(samples, adapter_dir, merged_dir, say)
    uploads += sample_files
    run_cfg = (run_config_for_checkpoint(adapter_dir) if adapter_dir is not None else None) or cfg
    ds_dir = _dataset_dir(dataset_dir, run_cfg) if push_dataset or dataset_dir else None
    ds_push = _dataset_for_push(ds_dir) if ds_dir is not None else None
    vb, va = val_losses(card_items)
    val_before = val_loss_before if val_loss_before is not None else vb
    val_after = val_loss_after if val_loss_after is not None else va
    base_model, base_id, demo = _base_model_names(run_cfg, hc.base_model_id)

    if offline():
        raise HubError("offline: HF_HUB_OFFLINE is set, so nothing can be pushed. Unset it and try again.",
                       code="hub_offline")
    tok, source = resolve_token(token)
    ep = hub_endpoint(endpoint)
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=ep, token=tok)
    try:
        user = api.whoami()
        if "/" not in repo_id:
            repo_id = f"{user.get('name')}/{repo_id}"
        ds_repo = None
        if ds_push:
            ds_repo = dataset_repo_id or hc.dataset_repo_id or f"{repo_id}-data"
            if "/" not in ds_repo:
                ds_repo = f"{user.get('name')}/{ds_repo}"
        say(f"pushing to {ep}/{repo_id} ({'private' if private else 'public'}) as {user.get('name')} "
            f"(token from the {source})")
        _ensure_repo(api, repo_id, "model", private, update, tok, user, ep)
        card = build_model_card(repo_id=repo_id, base_model=base_model, base_model_id=base_id,
                                training=run_cfg.to_dict()["training"], lora=run_cfg.to_dict()["lora"],
                                dataset=_dataset_summary(ds_dir), val_before=val_before, val_after=val_after,
                                samples=sample_rows, has_adapter=adapter_dir is not None,
                                has_merged=merged_dir is not None, merged_info=merged_info, demo=demo,
                                dataset_repo_id=ds_repo, endpoint=ep, sample_settings=sample_settings)
        ops = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")),
               CommitOperationAdd(path_in_repo="training_config.yaml",
                                  path_or_fileobj=_training_yaml(run_cfg).encode("utf-8"))]
        ops += [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=str(src)) for src, dest in uploads]
        info = api.create_commit(repo_id, operations=ops, repo_type="model",
                                 commit_message=commit_message or "SongGen Studio: finetuned SongGeneration")
        result = PushResult(repo_id=repo_id, url=f"{ep}/{repo_id}", private=private, commit=getattr(info, "oid", None),
                            files=[op.path_in_repo for op in ops], token_source=source)
        say(f"pushed {len(ops)} files to {result.url}")
        if ds_push:
            _ensure_repo(api, ds_repo, "dataset", private, update, tok, user, ep)
            result.dataset_repo_id = ds_repo
            result.dataset_url, result.dataset_files = _push_dataset(api, ds_repo, ds_push, repo_id, ep, private, tok,
                                                                     say)
        return result
    except Exception as err:  # noqa: BLE001 - every failure leaves as a HubError in words, token masked
        raise _explain(err, tok, repo_id, ep) from None


def _base_model_names(run_cfg, base_model_id: Optional[str]) -> tuple[str, Optional[str], bool]:
    """(the card's base model name, its Hub id if it has one, whether it is the demo); `base_model_id`:
    the pushing config's `hub.base_model_id`."""
    from core.model.info import looks_like_repo_id

    base_path = run_cfg.paths.base_model_path
    base_id = base_model_id or (base_path if looks_like_repo_id(base_path) else None)
    base_model = base_id or Path(base_path).name  # a folder name, never a local path, goes public
    return base_model, base_id, base_path == "demo" or run_cfg.data.codec == "demo"


def _model_uploads(adapter_dir: Optional[Path], merged_dir: Optional[Path]) -> tuple[list[tuple[Path, str]], Any]:
    """(local file, path in the repo) of the adapter and the merged model, and the merged export's export.json."""
    uploads: list[tuple[Path, str]] = []
    if adapter_dir is not None:
        uploads += [(f, f"adapter/{f.name}") for f in _adapter_files(adapter_dir)]
    merged_info = None
    if merged_dir is not None:
        uploads += [(f, f"merged/{f.name}") for f in _merged_files(merged_dir)]
        if (merged_dir / "export.json").is_file():
            merged_info = json.loads((merged_dir / "export.json").read_text(encoding="utf-8"))
    return uploads, merged_info


def _dataset_dir(dataset_dir: Optional[str | Path], run_cfg) -> Path:
    """The prepared dataset to push: the one named, else the run's."""
    if dataset_dir:
        return Path(dataset_dir).expanduser()
    from core.training.dataset import find_dataset_dir
    try:
        return find_dataset_dir(run_cfg)
    except Exception as err:  # noqa: BLE001
        raise HubError(f"no prepared dataset to push: {err}") from None


def _push_dataset(api, ds_repo: str, ds_push, repo_id: str, ep: str, private: bool, tok: str,
                  say: Callable[[str], None]) -> tuple[str, list[str]]:
    """The prepared dataset to its (existing) dataset repo: card and report, then the parquet splits.
    -> (its URL, the files the repo then holds)."""
    from huggingface_hub import CommitOperationAdd, DatasetCard

    dd, side = ds_push
    # Our card and the preparation report go first; push_to_hub then keeps the card's text and adds
    # the configs/dataset_info metadata the Hub viewer and `load_dataset` read.
    ds_card = DatasetCard(f"---\nlicense: other\ntags:\n- songgen-studio\n- songgeneration-tokens\n---\n\n"
                          f"# {ds_repo.split('/')[-1]}\n\nTokenized songs (SongGeneration token streams) used "
                          f"to finetune [{repo_id}]({ep}/{repo_id}). Load with "
                          f"`datasets.load_dataset(\"{ds_repo}\")`. The audio and lyrics belong to their "
                          "owners; keep this repo private unless you hold the rights.\n")
    dops = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(ds_card).encode("utf-8"))]
    dops += [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=data) for data, dest in side]
    api.create_commit(ds_repo, operations=dops, repo_type="dataset",
                      commit_message="SongGen Studio: dataset card and preparation report")
    with _datasets_endpoint(ep):
        dd.push_to_hub(ds_repo, private=private, token=tok,
                       commit_message="SongGen Studio: prepared dataset (parquet)")
    url = f"{ep}/datasets/{ds_repo}"
    say(f"pushed the dataset ({', '.join(f'{k}: {len(v)} songs' for k, v in dd.items())}) to {url}")
    return url, sorted(api.list_repo_files(ds_repo, repo_type="dataset"))


