"""Issue 14: text reaches the model in the forms it was trained on.

Official lyrics pass byte for byte (both sentence and join styles), only non-official input is
fixed and in the song's own style; v2 description tags are kept; section names in Chinese,
Japanese, Korean and Spanish map to the official tags without merging sections; instrumental
songs are conditioned as upstream's bgm mode; the loader ignores non-`audiolm` keys with a note;
freeze_transformer holds the main stack bit-for-bit fixed.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from core.text import description as desc_mod
from core.text import lyrics as lyr
from core.text.rules import model_text, song_text
from core.text.section_names import map_section_label
from tests.datagen import SHARED

FIXTURE = SHARED / "fixtures" / "songgen-tiny-v2"
CKPT = FIXTURE / "ckpt" / "songgen_tiny_v2"

# Our own lyrics in the forms of upstream's example files (not copied from them).
OFFICIAL = {
    # English, sentences ". " with a final ".", sections "; " after the intro and " ; " elsewhere
    "en_spaced": ("[intro-medium]; [verse] Lanterns sway above the pier. Boats drift home at dusk. Gulls fold their "
                  "wings. ; [chorus] Hold the light for me. Keep the harbor near. ; [inst-medium] ; [verse] Nets lie "
                  "drying on the stones. Tides forget our names. ; [chorus] Hold the light for me. Keep the harbor "
                  "near. ; [outro-medium]"),
    # English, sentences "." without spaces, sections " ; "
    "en_tight": ("[intro-short] ; [verse] the city sleeps.the river hums.we walk the empty road. ; [chorus] sing it "
                 "low.sing it slow. ; [bridge] Mid-autumn's lamps don't fade. ; [outro-short]"),
    # Chinese, sections "; " and " ; ", no final "."
    "zh": ("[intro-medium]; [verse] 晚风吹过旧街道.灯火映着归人.石桥下流水轻轻 ; [chorus] 我把思念写成歌.唱给远方的你听 ; "
           "[inst-medium]; [verse] 雨落在窗前.茶香还在杯中 ; [chorus] 我把思念写成歌.唱给远方的你听 ; [outro-medium]"),
    # upstream's files also hold a double space after a separator and a ";" inside a chorus
    "zh_quirks": ("[intro-short] ;  [verse] 山路弯弯.云雾轻轻 ; [chorus] 一路向前走;不再回头看.心里有光 ; [outro-short]"),
}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_lyrics_pass_byte_for_byte(name):
    text = OFFICIAL[name]
    r = lyr.check_lyrics(text)
    assert r.status in ("ok", "warning") and not r.changes and not r.errors, (r.changes, r.errors)
    assert r.text == text
    assert lyr.check_lyrics(text, fix=False).text == text
    # the model gets upstream's only lyric change ("  " -> " ") and nothing else
    assert song_text(r.text, "female, pop", "v2")[0] == text.replace("  ", " ")
    if name == "zh_quirks":
        assert any("';' inside the text is kept" in w for w in r.warnings)
        assert [t for t, _ in r.sections] == ["[intro-short]", "[verse]", "[chorus]", "[outro-short]"]


def test_fix_keeps_official_sections_and_uses_the_songs_style():
    text = ("[intro-medium]; [verse] Lanterns sway above the pier. Boats drift home at dusk.; "
            "[Chorus] Hold on, hold on! We are home; [inst-medium]; [verse] Nets lie drying. Tides forget.; [outro-medium]")
    r = lyr.check_lyrics(text)
    assert r.status == "fixed" and r.changes
    # the broken chorus is rewritten with ". " between sentences; every other byte stays
    assert r.text == text.replace("[Chorus] Hold on, hold on! We are home", "[chorus] Hold on hold on. We are home.")
    tight = lyr.check_lyrics("[verse] 一起走.不回头 ; [副歌] 唱吧，唱吧！ ; [outro-short]")
    assert tight.text == "[verse] 一起走.不回头 ; [chorus] 唱吧.唱吧 ; [outro-short]"
    # line-based input takes the join and sentence style found in the song
    lines = "[intro-medium]; [verse] Rain on the glass. Coffee gone cold.\n\n[Chorus]\nSing it slow\nLet it go"
    fixed = lyr.check_lyrics(lines)
    assert fixed.text == "[intro-medium]; [verse] Rain on the glass. Coffee gone cold.; [chorus] Sing it slow. Let it go."
    assert lyr.check_lyrics(fixed.text).status == "ok"


CJK_SHEETS = [
    ("[前奏]\n\n[主歌]\n晚风吹过旧街道，灯火映着归人\n\n[副歌]\n我把思念写成歌\n唱给远方的你听\n\n[间奏]\n\n[桥段]\n"
     "如果时间能倒流\n\n[尾奏]",
     "[intro-short] ; [verse] 晚风吹过旧街道.灯火映着归人 ; [chorus] 我把思念写成歌.唱给远方的你听 ; [inst-short] ; "
     "[bridge] 如果时间能倒流 ; [outro-short]"),
    ("主歌1：\n山路弯弯\n导歌：\n云雾轻轻\n【副歌】\n一路向前走\n副歌2\n不再回头看",
     "[verse] 山路弯弯 ; [verse] 云雾轻轻 ; [chorus] 一路向前走 ; [chorus] 不再回头看"),
    ("[Aメロ]\n夜の街を歩く\n[サビ]\n君の名前を呼ぶ\n[アウトロ]",
     "[verse] 夜の街を歩く ; [chorus] 君の名前を呼ぶ ; [outro-short]"),
    ("[벌스]\n밤하늘 별빛 아래\n[후렴]\n너를 불러\n[브릿지]\n다시 만나", "[verse] 밤하늘 별빛 아래 ; [chorus] 너를 불러 ; [bridge] 다시 만나"),
    ("[Estrofa 1]\nCamino bajo la luna\n[Estribillo]\n¡Canta conmigo!\n[Puente]\nNo me olvides",
     "[verse] Camino bajo la luna. ; [chorus] Canta conmigo. ; [bridge] No me olvides."),
]


@pytest.mark.parametrize("sheet,expected", CJK_SHEETS)
def test_section_names_map_and_sections_stay_apart(sheet, expected):
    r = lyr.check_lyrics(sheet)
    assert r.status == "fixed", r.errors
    assert r.text == expected
    assert any("mapped to official tags" in c for c in r.changes)


@pytest.mark.parametrize("label,tag", [
    ("过门", "[inst-short]"), ("過門", "[inst-short]"), ("长过门", "[inst-long]"),      # a fill, not a bridge
    ("ラスサビ", "[chorus]"), ("ラストサビ", "[chorus]"), ("大サビ", "[chorus]"), ("最后副歌", "[chorus]"),
    ("Coro final", "[chorus]"), ("Estribillo final", "[chorus]"), ("Último coro", "[chorus]"),
    ("마지막 후렴", "[chorus]"), ("Dメロ", "[bridge]"), ("Ｄメロ2", "[bridge]"), ("Cメロ", "[bridge]"),
    ("ソロ", "[inst-short]"), ("ギターソロ", "[inst-short]"), ("ピアノソロ", "[inst-short]"),
    ("吉他独奏", "[inst-short]"), ("기타 솔로", "[inst-short]"), ("Guitar Solo", "[inst-short]"),
])
def test_section_name_families(label, tag):
    assert map_section_label(label) == tag
    assert map_section_label(label, loose=False) == tag     # a header on its own line too


def test_a_fill_is_instrumental_and_never_takes_a_bridges_lyrics():
    r = lyr.check_lyrics("[主歌]\n晚风吹过\n[桥段]\n如果时间能倒流\n[过门]\n[副歌]\n我把思念写成歌\n[ギターソロ]\n[ラスサビ]\n君の名前")
    assert r.status == "fixed", r.errors
    assert r.text == "[verse] 晚风吹过 ; [bridge] 如果时间能倒流 ; [inst-short] ; [chorus] 我把思念写成歌 ; " \
                     "[inst-short] ; [chorus] 君の名前"
    assert not lyr.check_lyrics("[verse]\nwe are going solo\nthe final end").errors   # lyric lines stay lyrics


def test_verse_and_chorus_in_chinese_are_both_kept():
    r = lyr.check_lyrics("[主歌]\n第一句\n第二句\n\n[副歌]\n副歌一句\n副歌两句")
    assert [t for t, _ in r.sections] == ["[verse]", "[chorus]"]
    assert r.text == "[verse] 第一句.第二句 ; [chorus] 副歌一句.副歌两句"


def test_unmappable_header_is_an_error_naming_its_line():
    r = lyr.check_lyrics("[主歌]\n第一句\n\n[独白]\n你好")
    assert r.status == "error" and r.errors[0].startswith("line 4: unknown section tag [独白]")
    one_line = lyr.check_lyrics("[verse] a.b ; [Spoken Word] hello")
    assert one_line.status == "error" and "section 2: unknown section tag [Spoken Word]" in one_line.errors[0]
    # a lyric line made of ordinary words is never taken for a header
    assert lyr.check_lyrics("[verse]\nwe break the end\nsolo").text == "[verse] we break the end.solo."


# ---------------------------------------------------------------- descriptions
def test_v2_tags_are_kept_and_reach_the_model_text():
    d = desc_mod.check_description("[Musicality-medium], Female, Pop")
    assert d.text == "[Musicality-medium], female, pop" and d.tier == "medium"
    assert model_text("[verse] la", d.text, "v2") == ("[verse] la", "[Musicality-medium], female, pop")
    inst = "[intro-short] ; [inst-long] ; [outro-short]"
    p = desc_mod.check_description("[Pure-Music], electronic", musicality="medium", instrumental=True)
    assert p.text == "[Musicality-medium], [Pure-Music], electronic" and not p.warnings
    # training an instrumental song == upstream's bgm generation (the same function)
    assert song_text(inst, p.text, "v2") == (".", "[Musicality-medium], [Pure-Music], electronic")
    assert song_text(inst, "electronic", "v2") == model_text("[verse] x", "electronic", "v2", mode="bgm") == \
        (".", "[Musicality-very-high], [Pure-Music], electronic")
    assert song_text(inst, "electronic", "v1") == (inst, "electronic")  # v1 has no bgm conditioning
    # bgm lower-cases as upstream, also a description already holding its tier and [Pure-Music]
    assert song_text(inst, "Electronic, Synth", "v2") == (".", "[Musicality-very-high], [Pure-Music], electronic, synth")
    assert song_text(inst, "[Musicality-medium], [Pure-Music], Electronic", "v2") == \
        (".", "[Musicality-medium], [Pure-Music], electronic")
    assert model_text("x", "[Musicality-low], pop", "v1") == ("x", "pop")  # not in v1's vocabulary


def test_tags_become_single_tokens_of_the_description_tokenizer():
    from core.model.text import V2_DESCRIPTION_TAGS, description_tokenizer

    assert desc_mod.MUSICALITY_TAGS == tuple(V2_DESCRIPTION_TAGS)
    tok = description_tokenizer(FIXTURE / "third_party" / "Qwen2-7B", 32, "v2")
    _, text = song_text("[intro-short] ; [inst-long]", "[Musicality-medium], [Pure-Music], electronic", "v2")
    ids = tok.token_ids(text)
    assert tok.tokenizer.convert_tokens_to_ids("[Musicality-medium]") == 151648 and 151648 in ids
    assert tok.tokenizer.convert_tokens_to_ids("[Pure-Music]") == 151651 and 151651 in ids


def test_musicality_tier_validation_and_override():
    assert [desc_mod.parse_musicality(x) for x in ("Medium", "very high", "[Musicality-low]", "中", None)] == \
        ["medium", "very-high", "low", "medium", None]
    with pytest.raises(ValueError, match="very-high, high, medium, low, very-low"):
        desc_mod.parse_musicality("great")
    d = desc_mod.check_description("[Musicality-high], female", musicality="low")
    assert d.text == "[Musicality-low], female" and "replaces the tier high" in d.warnings[0]
    assert desc_mod.check_description(None, musicality="medium").text == "[Musicality-medium]"
    assert model_text("[verse] a", "[Musicality-medium]", "v2")[1] == "[Musicality-medium], ."
    warn = desc_mod.check_description("[Pure-Music], pop", instrumental=False)
    assert "[Pure-Music]" in warn.text and "sung sections" in warn.warnings[0]


def test_chinese_style_tags_map_to_the_official_vocabulary():
    d = desc_mod.check_description("女声，流行、悲伤，钢琴，120拍")
    assert d.text == "female, pop, sad, piano, the bpm is 120." and not d.unknown
    assert "女声 -> female" in d.changes[0]
    vocab = {t for tags in desc_mod.list_tags().values() for t in tags}
    assert set(desc_mod.chinese_tags().values()) <= vocab  # every mapping lands in the official lists
    odd = desc_mod.check_description("琵琶, 流行音乐")
    assert odd.text == "琵琶, pop" and odd.unknown == ["琵琶"]
    assert "female" in desc_mod.suggest_tags("女声")


# ---------------------------------------------------------------- checkpoints
def _runtime_copy(tmp_path: Path) -> Path:
    root = tmp_path / "runtime"
    (root / "third_party").mkdir(parents=True)
    os.symlink(FIXTURE / "third_party" / "Qwen2-7B", root / "third_party" / "Qwen2-7B")
    shutil.copytree(FIXTURE / "conf", root / "conf")
    ckpt = root / "ckpt" / "songgen_tiny_v2"
    ckpt.mkdir(parents=True)
    shutil.copy(CKPT / "config.yaml", ckpt / "config.yaml")
    return ckpt


def test_model_pt_with_optimizer_key_loads_with_a_note(tmp_path):
    from core.model import CheckpointError, LeLM

    ckpt = _runtime_copy(tmp_path)
    sd = torch.load(CKPT / "model.pt", map_location="cpu", weights_only=True)
    extra = dict(sd)
    extra["optimizer"] = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    extra["epoch"] = 3
    torch.save(extra, ckpt / "model.pt")
    model = LeLM.from_pretrained(ckpt)
    ref = LeLM.from_pretrained(CKPT, runtime_root=FIXTURE)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert any("'optimizer'" in n and "'epoch'" in n and "audiolm." in n for n in model.notes)
    bad = dict(sd)
    key = "audiolm.condition_provider.conditioners.prompt_audio.EOT_emb"
    bad[key] = torch.zeros(1, 8)
    torch.save(bad, ckpt / "model.pt")
    with pytest.raises(CheckpointError, match="EOT_emb' has shape \\(1, 8\\)"):
        LeLM.from_pretrained(ckpt)


# ---------------------------------------------------------------- freeze_transformer
def test_freeze_keeps_the_main_stack_bit_identical(tmp_path):
    from core.config import load_config
    from core.data.batch import collate
    from core.model import build_targets, masked_ce
    from core.model.freeze import sub_stack_parameter_count
    from core.training.trainer import build_model, make_optimizer

    cfg = load_config(None, {"workspace": str(tmp_path), "paths.base_model_path": str(CKPT),
                             "paths.runtime_path": str(FIXTURE), "training.type": "full",
                             "training.freeze_transformer": True, "training.learning_rate": 1e-2,
                             "training.condition_dropout": False})   # the prompt always reaches the model
    model, _, _ = build_model(cfg)  # the trainer's own model build
    L_sub = model.config.num_layers_sub
    stated = {f"transformer2.model.layers.{i}.{m}" for i in range(L_sub) for m in (
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
        "input_layernorm.weight", "post_attention_layernorm.weight")}
    stated |= {"transformer2.model.norm.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
               "layer2_emb.1.weight", "layer2_emb.2.weight", "linears.0.weight", "linears.1.weight"}
    prompt_side = {f"condition_provider.conditioners.prompt_audio.{n}" for n in
                   ("layer2_EOT_emb", "emb.1.weight", "emb.2.weight")}    # the prompt's stream-2 tables
    stated |= prompt_side
    assert {n for n, p in model.named_parameters() if p.requires_grad} == stated
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sub_stack_parameter_count(model.config)

    torch.manual_seed(0)
    codes = torch.randint(0, 16384, (2, 3, 12))
    items = [{"codes": codes[0], "reaches_end": True, "prompt": None, "lyrics": "[verse] la  la.la",
              "description": "[Musicality-medium], pop"},
             {"codes": codes[1, :, :9], "reaches_end": True, "prompt": None,
              "lyrics": "[intro-short] ; [inst-short]", "description": "electronic"}]
    batch = collate(items, model.config.prompt_frames, model.version)  # the training batch's texts
    lyrics, descs = batch["lyrics"], batch["descriptions"]
    assert lyrics == ["[verse] la la.la", "."]
    assert descs == ["[Musicality-medium], pop", "[Musicality-very-high], [Pure-Music], electronic"]
    targets = build_targets(batch["codes"], batch["lengths"])

    def outputs():
        model.eval()
        with torch.no_grad():
            cond = model.make_conditions(lyrics, descs, prompt, 2)
            prefix = model.condition_prefix(cond)
            seq = model.pattern.build(targets)
            x1 = torch.cat([prefix[0], model.emb[0](seq[:, 0])], dim=1)
            hidden = model.transformer.model(inputs_embeds=x1).last_hidden_state
            return hidden.clone(), model.forward_steps(seq, prefix)

    prompt = torch.randint(0, 16384, (2, 3, model.config.prompt_frames))
    h_before, logits_before = outputs()
    side_before = {n: model.get_parameter(n).detach().clone() for n in prompt_side}
    opt = make_optimizer(cfg, model)  # AdamW with weight decay, as training uses it
    model.train()
    model.seed_condition_dropout(0)
    logits, mask = model.compute_predictions(targets, lyrics, descs, prompt)
    masked_ce(logits, targets, mask).mean().backward()
    opt.step()
    h_after, logits_after = outputs()
    assert torch.equal(h_before, h_after)                                # main stack: the same bits
    assert torch.equal(logits_before[:, 0], logits_after[:, 0])          # stream-0 head too
    assert not torch.equal(logits_before[:, 1:], logits_after[:, 1:])    # the sub stack did learn
    assert all(not torch.equal(side_before[n], model.get_parameter(n)) for n in prompt_side)   # its prompt too


def test_freeze_transformer_with_lora_is_refused_with_its_equivalent(tmp_path):
    from core.config import ConfigError, load_config
    from core.training.setup import build_model

    cfg = load_config(None, {"workspace": str(tmp_path), "paths.base_model_path": str(CKPT),
                             "paths.runtime_path": str(FIXTURE), "training.type": "lora",
                             "training.freeze_transformer": True})
    with pytest.raises(ConfigError, match="with LoRA its equivalent is lora.stacks: transformer2"):
        build_model(cfg)


# ---------------------------------------------------------------- the data path
def test_prepare_keeps_official_text_and_carries_the_tiers(tmp_path):
    from core import data
    from core.codec.demo import DemoCodec
    from core.config import load_config
    from core.data.batch import collate
    from tests.datagen import write_song

    wavs = [write_song(tmp_path / "in" / f"s{i}.wav", 6, seed=20 + i) for i in range(4)]
    inst = "[intro-short] ; [inst-long] ; [outro-short]"
    items = [
        {"idx": "en", "audio": str(wavs[0]), "lyrics": OFFICIAL["en_spaced"],
         "description": "[Musicality-medium], female, pop"},
        {"idx": "zh", "audio": str(wavs[1]), "lyrics": OFFICIAL["zh"], "description": "女声，流行", "musicality": "low"},
        {"idx": "inst", "audio": str(wavs[2]), "lyrics": inst, "description": "[Pure-Music], electronic",
         "musicality": "medium"},
        {"idx": "bad", "audio": str(wavs[3]), "lyrics": OFFICIAL["en_tight"], "musicality": "great"},
    ]
    cfg = load_config(None, {"workspace": str(tmp_path / "ws"), "paths.prepared_data_dir": str(tmp_path / "prep"),
                             "data.min_duration_s": 1.0, "data.val_fraction": 0.0})
    res = data.prepare(cfg, items=items, codec=DemoCodec())
    report = {e["idx"]: e for e in res.report}
    assert report["bad"]["status"] == "rejected"
    assert any("musicality 'great' is not one of the official tiers" in r for r in report["bad"]["reasons"])
    assert report["en"]["status"] in ("ok", "warning") and not report["en"].get("lyrics_changes"), report["en"]
    assert report["en"]["musicality"] == "medium"
    assert report["inst"]["pure_music"] is True and report["zh"]["musicality"] == "low"
    rows = {r["idx"]: r for split in data.load_prepared(res.dataset_dir).values() for r in split}
    assert set(rows) == {"en", "zh", "inst"}
    assert rows["en"]["lyrics"] == OFFICIAL["en_spaced"] and rows["zh"]["lyrics"] == OFFICIAL["zh"]  # byte for byte
    assert rows["en"]["description"] == "[Musicality-medium], female, pop"
    assert rows["zh"]["description"] == "[Musicality-low], female, pop"
    assert rows["inst"]["description"] == "[Musicality-medium], [Pure-Music], electronic"
    batch = collate([{"codes": rows[k]["codes"][:, :50], "reaches_end": False, "prompt": None,
                      "lyrics": rows[k]["lyrics"], "description": rows[k]["description"]} for k in ("en", "inst")],
                    250, "v2")
    assert batch["lyrics"] == [OFFICIAL["en_spaced"], "."]
    assert batch["descriptions"] == ["[Musicality-medium], female, pop", "[Musicality-medium], [Pure-Music], electronic"]
