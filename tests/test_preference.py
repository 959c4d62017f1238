"""Preference pairs (store, validation, jsonl) and the DPO loss on the official tiny fixture.

The DPO numbers are checked against the formula written out by hand: log-probs gathered position by
position from the model's own logits (log_softmax, explicit loops over streams and frames), then
-(1-eps) log sigmoid(h) - eps log sigmoid(-h), h = beta [(pi_c - ref_c) - (pi_r - ref_r)].
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import parse_config
from core.model import LeLM
from core.preference import PairError, PairStore, split_prompts, validate_row
from core.training.dpo_loss import DPOStep, dpo_loss, pair_logps, reward_means, reward_sums

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURE = SHARED / "fixtures" / "songgen-tiny-v2"
CKPT = FIXTURE / "ckpt" / "songgen_tiny_v2"
LYRICS = "[verse] hold on.hold on to me ; [chorus] the night is young"


def song(seed: int, frames: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 16384, size=(3, frames))


def row(i: int, **kw) -> dict:
    r = {"prompt_id": f"p{i}", "lyrics": LYRICS, "description": "female, pop", "chosen": song(2 * i, 7).tolist(),
         "rejected": song(2 * i + 1, 5).tolist(), "chosen_seed": i, "rejected_seed": i + 100, "model_id": "m"}
    r.update(kw)
    return r


# ---- pairs ----------------------------------------------------------------------------------------
def test_store_add_export_import_roundtrip(tmp_path):
    store = PairStore(tmp_path / "pairs")
    assert len(store) == 0 and len(store.load()) == 0
    rep = store.add([row(0), row(1)])
    assert len(rep.added) == 2 and not rep.skipped
    again = store.add([row(1)])  # the same judgement twice is stored once
    assert not again.added and "already stored" in again.skipped[0]
    ds = store.load()
    assert len(ds) == 2 and ds.features["chosen"].length == 3
    assert ds[0]["chosen"] == row(0)["chosen"] and ds[1]["rejected_seed"] == 101 and ds[0]["created"]
    out = tmp_path / "pairs.jsonl"
    assert store.export_jsonl(out) == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["chosen"] == row(0)["chosen"] and lines[0]["pair_id"] == ds[0]["pair_id"]
    other = PairStore(tmp_path / "other")
    assert len(other.import_jsonl(out).added) == 2
    assert list(other.load()) == list(ds)
    assert store.remove([ds[0]["pair_id"]]) == 1 and len(store) == 1


def test_import_names_each_bad_line_and_keeps_the_good(tmp_path):
    bad_stream = row(2)
    bad_stream["chosen"][1] = bad_stream["chosen"][1][:-1]
    lines = [json.dumps(row(0)), "{not json", json.dumps(row(1, chosen=None)),
             json.dumps(bad_stream), json.dumps(row(3, rejected=[[16384] * 5] * 3)),
             json.dumps(row(4, rejected=row(4)["chosen"])), json.dumps(row(5, colour="red")), json.dumps(row(6))]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    store = PairStore(tmp_path / "pairs")
    store.add([row(6)])
    rep = store.import_jsonl(src)
    assert len(rep.added) == 1  # row 0 only; row 6 was there already
    text = "\n".join(rep.skipped)
    for expected in ["line 2: not valid JSON", "line 3: missing chosen", "line 4: chosen: the 3 streams must have "
                     "the same number of frames", "line 5: rejected[0, 0] = 16384", "line 6: chosen and rejected "
                     "are the same song", "line 7: unknown field(s) ['colour']", "line 8: pair", "already stored"]:
        assert expected in text, (expected, text)
    assert len(store) == 2


def test_validate_row_messages():
    with pytest.raises(PairError, match="must hold 3 streams"):
        validate_row(row(0, chosen=[[1, 2]] * 2))
    with pytest.raises(PairError, match="chosen_seed: must be an integer"):
        validate_row(row(0, chosen_seed="x"))
    with pytest.raises(PairError, match="tokens must be integers"):
        validate_row(row(0, chosen=[[0.5] * 3] * 3))
    clean = validate_row(row(0))
    assert clean["chosen"].shape == (3, 7) and len(clean["pair_id"]) == 16


def test_held_out_prompts_never_move_when_prompts_are_added():
    """Each prompt's side is a function of its own key: adding prompts one by one never moves an earlier
    one (on main the top-ceil(n x fraction) rule moved them); about val_fraction of them are held out."""
    keys = [f"[verse] line {i}\0pop" for i in range(200)]
    final = split_prompts(keys, 0.2, 7)
    for n in range(1, len(keys) + 1):
        assert split_prompts(keys[:n], 0.2, 7) == final & set(keys[:n]), n
    assert 0.12 * len(keys) <= len(final) <= 0.28 * len(keys)
    assert split_prompts(keys, 0.0, 7) == set() and split_prompts(keys, 0.2, 8) != final   # the seed decides


def test_the_split_keys_on_the_prompts_text(tmp_path):
    """Two listening sessions of the same lyrics + description are one prompt: never on both sides."""
    from core.preference.data import load_pair_splits

    texts = [(f"[verse] song {i // 2}.la", "female, pop") for i in range(40)]   # each text twice, two prompt ids
    rows = [row(i, prompt_id=f"session-{i}", lyrics=t[0], description=t[1]) for i, t in enumerate(texts)]
    cfg = parse_config({"workspace": str(tmp_path), "dpo": {"val_fraction": 0.3}})
    PairStore(tmp_path / "preference" / "pairs").add(rows)
    train, val, info = load_pair_splits(cfg, 100)
    lyr = lambda ps: {r["lyrics"] for r in ps.split}  # noqa: E731
    assert val is not None and len(train) + len(val) == 40 and not lyr(train) & lyr(val)
    assert info["val_prompts"] == len(lyr(val))
    # a fraction that would hold out every prompt leaves no held-out set rather than nothing to train on
    train, val, info = load_pair_splits(parse_config({"workspace": str(tmp_path), "dpo": {"val_fraction": 0.999999}}), 100)
    assert len(train) == 40 and val is None and info["val_prompts"] == 0


def test_pairs_keep_their_prompt_and_older_sets_still_load(tmp_path):
    import datasets

    prompt = song(50, 6)
    prompt[:, 4:] = 16385                                           # a prompt shorter than the model's
    store = PairStore(tmp_path / "pairs")
    store.add([row(0, prompt=prompt.tolist())])
    assert store.rows()[0]["prompt"] == prompt.tolist()
    with pytest.raises(PairError, match=r"prompt\[0, 0\] = 16386"):
        validate_row(row(1, prompt=[[16386] * 3] * 3))
    # a set stored before pairs had a prompt: loads with none, keeps its ids, takes new rows
    old = PairStore(tmp_path / "old")
    old_rows = [validate_row(row(i)) for i in range(2)]
    from core.preference.pairs import features
    schema = datasets.Features({k: v for k, v in features().items() if k != "prompt"})   # the schema before
    datasets.Dataset.from_dict({c: [r[c].tolist() if hasattr(r[c], "tolist") else r[c] for r in old_rows]
                                for c in schema}, features=schema).save_to_disk(str(old.root))
    assert [r["prompt"] for r in old.rows()] == [None, None]
    assert [r["pair_id"] for r in old.rows()] == [r["pair_id"] for r in old_rows]
    assert len(old.add([row(2, prompt=prompt.tolist())]).added) == 1
    assert [r["prompt"] is None for r in old.rows()] == [True, True, False]


# ---- DPO ------------------------------------------------------------------------------------------
def test_dpo_loss_formula_by_hand():
    pc, pr, rc, rr = (torch.tensor([v], dtype=torch.float64) for v in (-10.0, -12.0, -11.0, -11.0))
    beta, eps = 0.5, 0.1
    loss, crew, rrew = dpo_loss(pc, pr, rc, rr, beta, eps)
    h = beta * ((-10 + 11) - (-12 + 11))  # = 1.0
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert float(loss) == pytest.approx(-(1 - eps) * math.log(sig(h)) - eps * math.log(sig(-h)), abs=1e-12)
    assert float(crew) == pytest.approx(0.5) and float(rrew) == pytest.approx(-0.5)
    m = reward_means(reward_sums(torch.tensor([-10.0, -12.0]), torch.tensor([-11.0, -11.0]), beta, eps))
    assert m["reward_margin"] == pytest.approx(1.0) and m["reward_accuracy"] == 1.0 and m["pairs"] == 1


@pytest.fixture(scope="module")
def lora_model():
    from core.model.lora import apply_lora

    cfg = parse_config({"lora": {"r": 4, "alpha": 8, "dropout": 0.0}})
    lelm = LeLM.from_pretrained(CKPT, runtime_root=FIXTURE)
    for p in lelm.parameters():
        p.requires_grad_(False)
    peft_model = apply_lora(cfg, lelm)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a "trained" adapter: B != 0, so the policy differs from the base
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    peft_model.eval()
    return peft_model, lelm


def pair_batch(lelm, frames=(6, 4)):
    from core.preference.data import collate_pairs

    c, r = torch.as_tensor(song(11, frames[0])), torch.as_tensor(song(12, frames[1]))
    side = lambda x: {"codes": x, "reaches_end": True, "prompt": None, "lyrics": LYRICS,  # noqa: E731
                      "description": "female, pop"}
    batch = collate_pairs([{"pair_id": "x", "chosen": side(c), "rejected": side(r)}], lelm.config.prompt_frames,
                          lelm.version)
    assert batch.pop("pair_ids") == ["x"]
    return batch, (c, r)


def hand_logp(model_lelm, batch, b: int, song_codes: torch.Tensor) -> float:
    """log p of every (stream, frame < length) token and of the EOS after the song (it ends in the
    window), one by one from the model's logits."""
    from core.model import build_targets

    targets = build_targets(batch["codes"], batch["lengths"])
    with torch.no_grad():
        logits, _ = model_lelm.compute_predictions(targets, batch["lyrics"], batch["descriptions"], batch["prompt"])
    logp = torch.log_softmax(logits[b].double(), dim=-1)
    total = 0.0
    for q in range(3):
        for t in range(song_codes.shape[1]):
            total += float(logp[q, t, int(song_codes[q, t])])
        total += float(logp[q, song_codes.shape[1], 16384])
    return total


def test_reference_with_adapters_disabled_equals_base_exactly(lora_model):
    peft_model, lelm = lora_model
    base = LeLM.from_pretrained(CKPT, runtime_root=FIXTURE).eval()
    step = DPOStep(peft_model, lelm, beta=0.1)
    batch, _ = pair_batch(lelm)
    ref = pair_logps(step, batch, reference=True)
    plain = pair_logps(DPOStep(base, base, beta=0.1), batch, reference=False)
    assert torch.equal(ref, plain), (ref, plain)
    policy = pair_logps(step, batch, reference=False)
    assert (policy - ref).abs().min() > 1e-3  # the adapter does change the model


def test_dpo_step_equals_hand_computation(lora_model):
    peft_model, lelm = lora_model
    base = LeLM.from_pretrained(CKPT, runtime_root=FIXTURE).eval()
    beta, eps, w = 0.3, 0.1, 0.5
    step = DPOStep(peft_model, lelm, beta=beta, sft_weight=w, label_smoothing=eps)
    batch, (c, r) = pair_batch(lelm)
    loss, stats = step(**batch)
    pi_c, pi_r = hand_logp(lelm, batch, 0, c), hand_logp(lelm, batch, 1, r)
    ref_c, ref_r = hand_logp(base, batch, 0, c), hand_logp(base, batch, 1, r)
    h = beta * ((pi_c - ref_c) - (pi_r - ref_r))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    dpo = -(1 - eps) * math.log(sig(h)) - eps * math.log(sig(-h))
    # SFT part: the chosen song's mean CE per stream over its frames and its EOS, averaged over streams
    from core.model import build_targets
    targets = build_targets(batch["codes"], batch["lengths"])
    with torch.no_grad():
        logits, _ = lelm.compute_predictions(targets, batch["lyrics"], batch["descriptions"], batch["prompt"])
    lp = torch.log_softmax(logits[0].double(), dim=-1)
    per_stream = []
    for q in range(3):
        vals = [float(lp[q, t, int(c[q, t])]) for t in range(c.shape[1])] + [float(lp[q, c.shape[1], 16384])]
        per_stream.append(-sum(vals) / len(vals))
    sft = sum(per_stream) / 3
    got = dict(zip(("loss", "dpo_loss", "sft_loss", "chosen_reward", "rejected_reward", "reward_margin",
                    "reward_accuracy"), stats.tolist()))
    assert got["dpo_loss"] == pytest.approx(dpo, abs=1e-5)
    assert got["sft_loss"] == pytest.approx(sft, abs=1e-5)
    assert float(loss.detach()) == pytest.approx(dpo + w * sft, abs=1e-5)
    assert got["chosen_reward"] == pytest.approx(beta * (pi_c - ref_c), abs=1e-4)
    assert got["rejected_reward"] == pytest.approx(beta * (pi_r - ref_r), abs=1e-4)
    assert got["reward_accuracy"] == float(h > 0)
    loss.backward()  # the gradient reaches the adapter only
    grads = [p.grad for n, p in peft_model.named_parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


# ---- candidates and the CLI -------------------------------------------------------------------------
def test_candidates_mark_rank_and_cli(tmp_path, capsys):
    from core.cli import main
    from core.export import candidates as cand

    cfg = parse_config({"workspace": str(tmp_path), "paths": {"base_model_path": str(CKPT),
                                                              "runtime_path": str(FIXTURE)},
                        "data": {"codec": "demo"}, "generation": {"max_seconds": 0.6}})
    rec = cand.generate_candidates(cfg, LYRICS, "female, pop", 3, seed=5)
    assert [it["seed"] for it in rec["items"]] == [5, 6, 7]
    for it in rec["items"]:
        assert Path(it["audio"]).is_file() and np.load(it["tokens"]).shape[0] == 3
    set_dir = cand.candidates_root(cfg) / rec["prompt_id"]
    assert cand.list_sets(cfg)[0]["prompt_id"] == rec["prompt_id"]
    rep = cand.mark(cfg, set_dir, chosen=1, rejected=[0, 2])
    assert len(rep.added) == 2, rep.summary()
    store = PairStore(tmp_path / "preference" / "pairs")
    rows = store.rows()
    assert rows[0]["chosen"] == np.load(rec["items"][1]["tokens"]).tolist()
    assert (rows[0]["chosen_seed"], rows[0]["rejected_seed"], rows[1]["rejected_seed"]) == (6, 5, 7)
    assert rows[0]["prompt_id"] == rec["prompt_id"] and rows[0]["model_id"].startswith("base:")
    # a ranking 2 > 1 > 0 = 2 over 1, 2 over 0, 1 over 0; the last is stored already and kept once
    rep = cand.rank(cfg, set_dir, [2, 1, 0])
    assert len(rep.added) == 2 and rep.skipped == [f"candidate 1 over 0: pair {rows[0]['pair_id']} is already "
                                                   "stored (kept as it was)"]
    with pytest.raises(PairError, match="candidate 9 is not in set"):
        cand.mark(cfg, set_dir, chosen=9, rejected=[0])
    # CLI: export, import into another workspace (all added), list
    cfg_file = tmp_path / "cfg.yaml"
    cfg.save(cfg_file)
    out = tmp_path / "pairs.jsonl"
    assert main(["pairs", "export", str(out), "--config", str(cfg_file)]) == 0
    assert len(out.read_text().splitlines()) == 4
    assert main(["pairs", "import", str(out), "--config", str(cfg_file), "--set", f"workspace={tmp_path / 'b'}"]) == 0
    assert len(PairStore(tmp_path / "b" / "preference" / "pairs")) == 4
    assert main(["pairs", "list", "--config", str(cfg_file)]) == 0
    assert "4 pair(s)" in capsys.readouterr().out
    assert main(["candidates", "mark", str(set_dir), "--chosen", "0", "--rejected", "0", "--config", str(cfg_file)]) == 1
    assert "mark at least one rejected candidate" in capsys.readouterr().err


def test_monitor_plots_dpo_curves(tmp_path):
    """The Train tab's plot series of a DPO run: train reward curves smoothed, held-out values as they are."""
    from studio import monitor

    with open(tmp_path / "metrics.jsonl", "w") as fh:
        for s in (1, 2):
            fh.write(json.dumps({"type": "metrics", "step": s, "loss": 0.69, "reward_margin": 0.1 * s,
                                 "reward_accuracy": 1.0}) + "\n")
        fh.write(json.dumps({"type": "event", "event": "eval", "step": 2, "val_reward_margin": 0.7,
                             "val_reward_accuracy": 0.75, "val_dpo_loss": 0.4}) + "\n")
    rows = monitor.refresh(tmp_path).rows()
    labels = {r[2] for r in rows}
    assert {"reward_margin (smoothed)", "reward_accuracy (smoothed)", "val_reward_margin",
            "val_reward_accuracy"} <= labels
    assert (2, 0.7, "val_reward_margin") in rows


def test_pairs_carry_the_candidates_prompt_into_dpo_scoring(tmp_path, lora_model):
    """Candidates made with prompt tokens -> their pairs store that prompt -> the DPO batch scores both
    songs with it (a different log-prob than with no prompt), and counts the EOS of a song that ends."""
    from core.export import candidates as cand
    from core.preference.data import collate_pairs, load_pair_splits

    peft_model, lelm = lora_model
    P = lelm.config.prompt_frames
    given = song(60, P + 3)                                    # longer than the model's prompt: cut to P
    np.save(tmp_path / "p.npy", given)
    cfg = parse_config({"workspace": str(tmp_path), "paths": {"base_model_path": str(CKPT), "runtime_path": str(FIXTURE)},
                        "data": {"codec": "demo"}, "dpo": {"val_fraction": 0.0},
                        "generation": {"max_seconds": 0.6, "prompt_tokens": str(tmp_path / "p.npy")}})
    rec = cand.generate_candidates(cfg, LYRICS, "female, pop", 2, seed=3)
    cand.mark(cfg, cand.candidates_root(cfg) / rec["prompt_id"], chosen=0, rejected=[1])
    stored = PairStore(tmp_path / "preference" / "pairs").rows()[0]
    assert stored["prompt"] == given[:, :P].tolist()
    train, _, _ = load_pair_splits(cfg, 100)
    batch = collate_pairs([train.item(0)], P, lelm.version)
    batch.pop("pair_ids")
    assert batch["prompt"].tolist() == [given[:, :P].tolist()] * 2          # both sides, as generated
    step = DPOStep(peft_model, lelm, beta=0.1)
    with_prompt = pair_logps(step, batch, reference=False)
    without = pair_logps(step, {**batch, "prompt": torch.full_like(batch["prompt"], 16385)}, reference=False)
    assert (with_prompt - without).abs().min() > 1e-4
    # EOS counts for a song that ends in the window, not for a cropped one
    from core.training.dpo_loss import inputs_and_valid
    lengths = batch["lengths"]
    _, valid = inputs_and_valid(batch["codes"], lengths, torch.tensor([True, False]))
    assert valid[0, :, lengths[0]].all() and not valid[1, :, lengths[1]].any()
