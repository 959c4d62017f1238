"""One owner for the sampling settings (core.sampling): the config's generation section, generation's
keyword defaults, export's Settings and the CLI's flags all take their defaults, bounds and gen types from it."""
from __future__ import annotations

import inspect

import pytest

from core.sampling import GEN_TYPES, SAMPLING, Sampling


def test_config_defaults_bounds_and_gen_types_come_from_sampling():
    from core.config import ConfigError, field_spec, load_config
    g = load_config(None, {}).generation
    assert {k: getattr(g, k) for k in SAMPLING.kwargs()} == SAMPLING.kwargs()
    assert tuple(field_spec("generation.gen_type").choices) == GEN_TYPES and g.gen_type == GEN_TYPES[0]
    for key, bad in (("temperature", 0.0), ("top_k", -1), ("top_p", 1.5), ("record_window", -2)):
        assert Sampling(**{key: bad}).problems(), key  # what Sampling refuses, the config refuses too
        with pytest.raises(ConfigError, match=key):
            load_config(None, {f"generation.{key}": bad})
    assert not SAMPLING.problems()


def test_generation_keyword_defaults_are_the_sampling_defaults():
    from core.model.generation import generate, generate_batch
    from core.model.lelm import LeLM
    for fn in (generate, generate_batch, LeLM.generate):
        params = inspect.signature(fn).parameters
        assert {k: params[k].default for k in SAMPLING.kwargs()} == SAMPLING.kwargs(), fn.__qualname__


def test_settings_take_the_config_and_refuse_out_of_bounds_overrides():
    from core.config import load_config
    from core.export.generate import GenerationError, Settings, settings_from_config
    assert issubclass(Settings, Sampling)
    cfg = load_config(None, {"generation.temperature": 0.7, "generation.top_k": 20})
    s = settings_from_config(cfg, top_p=0.9)
    assert (s.temperature, s.top_k, s.top_p, s.cfg_coef) == (0.7, 20, 0.9, SAMPLING.cfg_coef)
    assert s.kwargs() == {"cfg_coef": SAMPLING.cfg_coef, "temperature": 0.7, "top_k": 20, "top_p": 0.9,
                          "record_window": SAMPLING.record_window}
    assert {"temperature", "top_k", "gen_type", "lyrics"} <= set(s.to_dict())  # the manifest keeps flat keys
    with pytest.raises(GenerationError, match="temperature = 0.0 must be > 0"):
        settings_from_config(cfg, temperature=0.0)


def test_cli_flags_and_choices_come_from_sampling():
    from core.cli import build_parser
    parser = build_parser()
    args = parser.parse_args(["generate", "--top-k", "7", "--temperature", "0.8", "--gen-type", "bgm"])
    assert (args.top_k, args.temperature, args.gen_type) == (7, 0.8, "bgm")
    assert args.cfg_coef is None and args.record_window is None  # not given: the config's value is used
    assert isinstance(args.top_k, int) and isinstance(args.temperature, float)
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--gen-type", "loud"])
