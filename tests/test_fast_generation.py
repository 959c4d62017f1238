"""Fast generation paths give the eager path's tokens: static cache, compiled step, batch of songs."""
from __future__ import annotations


import pytest
import torch

from core.model import fast_step
from core.model.generation import apply_repetition_penalty, resolve_cache, resolve_compile



def test_static_cache_and_compiled_step_equal_eager(tiny, tiny_cases, monkeypatch):
    g = tiny_cases["generations"][0]
    i = g["case"]
    kw = dict(max_frames=g["max_gen_len"], greedy=True, cfg_coef=g["cfg_coef"], record_window=g["record_window"])
    args = (tiny_cases["lyrics"][i], tiny_cases["descriptions"][i], tiny_cases["prompt"][i])
    dynamic = tiny.generate(*args, cache="dynamic", **kw)
    static = tiny.generate(*args, cache="static", **kw)
    # The one-frame step captured as one graph (fullgraph=True) by dynamo; "eager" backend on a CPU.
    compiled = tiny.generate(*args, cache="static", compile="eager", **kw)
    # fast_step.FrameStep (the CPU default), with fused weight copies and with module calls.
    fused = tiny.generate(*args, cache="preallocated", **kw)
    monkeypatch.setattr(fast_step, "FUSE_MAX_BYTES", 0)
    modules = tiny.generate(*args, cache="preallocated", **kw)
    monkeypatch.setattr(fast_step.RowsLinear, "K_MAX", 24)  # every weight read in column blocks
    blocks = tiny.generate(*args, cache="preallocated", **kw)
    assert torch.equal(dynamic, g["tokens"])
    for other in (static, compiled, fused, modules, blocks):
        assert torch.equal(other, dynamic)
    # Seeded sampling: the same tokens through every cache.
    a = tiny.generate(*args, max_frames=10, seed=5, cache="dynamic")
    b = tiny.generate(*args, max_frames=10, seed=5, cache="static")
    monkeypatch.undo()
    c = tiny.generate(*args, max_frames=10, seed=5)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_frame_step_hidden_states_equal_the_stacks(tiny, tiny_cases, monkeypatch):
    """FrameStep's hidden states equal transformers' (the eager step) frame after frame, to fp32 rounding."""
    from transformers import DynamicCache

    torch.manual_seed(0)
    cond = tiny.make_conditions(tiny_cases["lyrics"], tiny_cases["descriptions"], tiny_cases["prompt"], 3)
    prefix = tiny.condition_prefix(cond)
    seq = torch.randint(0, 16384, (3, 3, 8))
    n = prefix[0].shape[1]
    # fused copies; module calls; module calls whose weights are read in column blocks (K_MAX below the widths);
    # both float32 forms of the row matmul (`mm(w, x.t())` or `linear`, whichever this CPU measured faster)
    k = fast_step.RowsLinear.K_MAX
    for fuse, k_max, mm in ((512 * 2 ** 20, k, True), (0, k, True), (0, 24, True), (512 * 2 ** 20, k, False)):
        monkeypatch.setattr(fast_step, "FUSE_MAX_BYTES", fuse)
        monkeypatch.setattr(fast_step.RowsLinear, "K_MAX", k_max)
        monkeypatch.setattr(fast_step, "ROW_MM", mm)
        with torch.no_grad():
            ref = (DynamicCache(), DynamicCache())
            ours = (DynamicCache(), DynamicCache())
            tiny.hidden_steps(seq[..., :1], prefix, ref, torch.arange(n + 1))
            tiny.hidden_steps(seq[..., :1], prefix, ours, torch.arange(n + 1))
            step = fast_step.FrameStep(tiny, ours, n + 8)
            for t in range(1, 8):
                want = tiny.hidden_steps(seq[..., t:t + 1], None, ref, torch.arange(n + t, n + t + 1))
                got = step(seq[..., t:t + 1])
                for w, o in zip(want, got):
                    torch.testing.assert_close(o, w[:, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fuse", [512 * 2 ** 20, 0])
@pytest.mark.parametrize("int8", [False, True])
def test_prefill_waiting_sub_stack_and_main_ahead_equal_the_stacks(tiny, tiny_cases, monkeypatch, fuse, int8):
    """FrameStep's own prefill, sub-stack positions that wait for one chunk, and main-stack positions run ahead
    on EMPTY inputs give transformers' hidden states (to fp32 rounding; int8: its own cache's error)."""
    from transformers import DynamicCache
    from core.model.pattern import EMPTY

    monkeypatch.setattr(fast_step, "FUSE_MAX_BYTES", fuse)
    cond = tiny.make_conditions(tiny_cases["lyrics"], tiny_cases["descriptions"], tiny_cases["prompt"], 3)
    prefix = tiny.condition_prefix(cond)
    seq = torch.randint(0, 16384, (3, 3, 12), generator=torch.Generator().manual_seed(1))
    seq[:, 0, 6:] = EMPTY  # the mixed stream is over from step 6: its inputs are EMPTY
    n = prefix[0].shape[1]
    tol = dict(rtol=0.05, atol=0.05) if int8 else dict(rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        ref = (DynamicCache(), DynamicCache())
        want = [tiny.hidden_steps(seq[..., :1], prefix, ref, torch.arange(n + 1))]
        want += [tiny.hidden_steps(seq[..., t:t + 1], None, ref, torch.arange(n + t, n + t + 1)) for t in range(1, 12)]
        step = fast_step.FrameStep(tiny, None, n + 12, int8=int8, rows=3)
        got = [step.prefill(prefix, seq[..., :1])]
        for t in range(1, 12):
            # steps 1-3 need no sub output (it waits); from step 5 the main stack's inputs are known EMPTY
            got.append(step.step(seq[..., t:t + 1], sub=t > 3, empty_ahead=11 - t if t >= 5 else 0))
        assert all(got[t][1] is None for t in (1, 2, 3)) and step.ahead == [] and step.waiting == []
        for t, (w, o) in enumerate(zip(want, got)):
            torch.testing.assert_close(o[0], w[0][:, -1], **tol)
            if o[1] is not None:
                torch.testing.assert_close(o[1], w[1][:, -1], **tol)
        step = fast_step.FrameStep(tiny, None, n + 12, int8=int8, rows=3)
        step.prefill(prefix, seq[..., :1])
        step.step(seq[..., 1:2], empty_ahead=3)
        with pytest.raises(RuntimeError, match="ran ahead"):
            step.step(seq[..., 2:3])  # a real mixed token where EMPTY was promised


@pytest.mark.parametrize("rows", [1, 2, 3, 4])
@pytest.mark.parametrize("bias", [False, True])
def test_row_matmul_equals_linear_at_real_widths(rows, bias, monkeypatch):
    """One position through RowsLinear (one row read as two; long weight rows in column blocks) gives F.linear's
    result to float32 rounding, at D1024's widths (2,816: the down projection, split in two blocks)."""
    monkeypatch.setattr(fast_step, "ROW_MM", True)  # the `mm(w, x.t())` form, whatever this CPU measured
    g = torch.Generator().manual_seed(rows)
    assert len(fast_step.RowsLinear(torch.ones(4, 2816), torch.float32, 2).blocks) == 1  # not asked to split
    for out, width in ((1024, 2816), (2816, 1024), (64, 1409)):
        w = torch.randn(out, width, generator=g) / width ** 0.5
        b = torch.randn(out, generator=g) if bias else None
        x = torch.randn(rows, width, generator=g)
        lin = fast_step.RowsLinear(w, torch.float32, 2, b, split=True)
        assert len(lin.blocks) == -(-width // fast_step.RowsLinear.K_MAX)
        want = torch.nn.functional.linear(x, w, b)
        got = lin(x)
        assert got.shape == want.shape and got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lin.many(x[None]), want[None], rtol=1e-5, atol=1e-5)


def test_row_form_is_the_one_measured_faster(monkeypatch):
    """`row_mm` picks the float32 form this CPU reads a weight faster with: each form is slowed in turn; a CPU
    where `linear` is faster gets plain `linear` (one block, no column copies)."""
    import time
    real_mm, real_linear = torch.mm, torch.nn.functional.linear

    def slow(f):
        return lambda *a, **k: (time.sleep(0.002), f(*a, **k))[1]
    for slowed, want in (("mm", False), ("linear", True)):
        monkeypatch.setattr(fast_step.torch, "mm", slow(real_mm) if slowed == "mm" else real_mm)
        monkeypatch.setattr(fast_step.F, "linear", slow(real_linear) if slowed == "linear" else real_linear)
        assert fast_step._row_mm_measured.__wrapped__(weights=2, shape=(64, 32), trials=1) is want
    monkeypatch.setattr(fast_step.torch, "mm", real_mm)
    monkeypatch.setattr(fast_step.F, "linear", real_linear)
    monkeypatch.setattr(fast_step, "ROW_MM", False)
    w, x = torch.randn(64, 2816), torch.randn(2, 2816)
    lin = fast_step.RowsLinear(w, torch.float32, 2, split=True)
    assert not lin.mm and len(lin.blocks) == 1
    torch.testing.assert_close(lin(x), real_linear(x, w), rtol=1e-5, atol=1e-5)


def test_batch_equals_one_song_runs(tiny, tiny_cases):
    lyr, desc, prompt = tiny_cases["lyrics"], tiny_cases["descriptions"], tiny_cases["prompt"]
    kw = dict(max_frames=9, top_k=50, temperature=1.0, cache="dynamic")
    singles = [tiny.generate(lyr[b], desc[b], prompt[b], seed=10 + b, **kw) for b in range(3)]
    batch = tiny.generate_batch(lyr, desc, [prompt[b] for b in range(3)], seeds=[10, 11, 12], **kw)
    assert len(batch) == 3
    for one, many in zip(singles, batch):
        assert torch.equal(one, many)
    with pytest.raises(ValueError, match="one prompt and one seed"):
        tiny.generate_batch(lyr, desc, None, seeds=[1], max_frames=2)


def test_choices_and_penalty():
    cpu = torch.device("cpu")
    assert resolve_cache("auto", cpu) == "preallocated" and resolve_cache("auto", torch.device("cuda")) == "static"
    with pytest.raises(ValueError, match="cache must be"):
        resolve_cache("paged", cpu)
    assert resolve_compile(None, cpu, "static") is None  # CPU: eager step
    assert resolve_compile(True, cpu, "static") is None
    assert resolve_compile(True, torch.device("cuda"), "static") == "inductor"
    assert resolve_compile(True, torch.device("cuda"), "dynamic") is None
    assert resolve_compile("eager", cpu, "static") == "eager"
    # The vectorized penalty equals the per-id loop it replaces (negatives divided too; EOS/EMPTY never).
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 16386)
    history = [torch.randint(16380, 16386, (2, 3)) for _ in range(30)]
    got = apply_repetition_penalty(scores.clone(), history, 20)
    want = scores.clone()
    recent = torch.stack(history[-20:], dim=-1)
    for b in range(2):
        for q in range(3):
            ids = recent[b, q][recent[b, q] < 16384].unique()
            want[b, q, ids] = want[b, q, ids] / 1.1
    assert torch.equal(got, want)
    # The history as one tensor [..., K, steps] (generation passes the sequence's columns).
    assert torch.equal(apply_repetition_penalty(scores.clone(), torch.stack(history, dim=-1), 20), want)


def test_frame_step_rms_norm_is_llamas_bit_for_bit():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    for dim in (256, 1536):
        mod = LlamaRMSNorm(dim, eps=1e-6)
        with torch.no_grad():
            mod.weight.normal_()
        x = torch.randn(7, dim) * 3
        assert torch.equal(fast_step._rms_norm(mod)(x), mod(x))


def test_lora_ab_and_strengths_in_one_pass(tiny_cases, fresh_tiny):
    """Base and LoRA rows (and the LoRA at another strength) in one batch = the separate passes."""
    from peft import LoraConfig, get_peft_model

    from core.model.generation import BASE_ADAPTER

    model = fresh_tiny
    torch.manual_seed(0)
    # Random (not zero) B matrices so the adapter changes the tokens; stacks, fusion MLP and heads adapted.
    target = r"^(?:(?:transformer|transformer2)\.model\.layers\.\d+\.(?:self_attn|mlp)\.(?:q_proj|v_proj|down_proj)" \
             r"|mlp\.0|transformer\.lm_head|linears\.\d+)$"
    pcfg = LoraConfig(r=4, lora_alpha=8, target_modules=target, init_lora_weights=False)
    peft_model = get_peft_model(model, pcfg).eval()
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.mul_(8)
    peft_model.add_adapter("weaker", pcfg)
    for layer in (m for m in model.modules() if hasattr(m, "lora_A") and "weaker" in m.lora_A):
        layer.lora_A["weaker"].load_state_dict(layer.lora_A["default"].state_dict())
        layer.lora_B["weaker"].load_state_dict(layer.lora_B["default"].state_dict())
        layer.set_scale("weaker", 0.5)
    peft_model.set_adapter("default")
    g = tiny_cases["generations"][0]
    i = g["case"]
    args = (tiny_cases["lyrics"][i], tiny_cases["descriptions"][i], tiny_cases["prompt"][i])
    kw = dict(max_frames=g["max_gen_len"], greedy=True, cfg_coef=g["cfg_coef"], record_window=g["record_window"])
    with peft_model.disable_adapter():
        base = model.generate(*args, **kw)
    lora = model.generate(*args, **kw)
    peft_model.set_adapter("weaker")
    weaker = model.generate(*args, **kw)
    assert torch.equal(base, g["tokens"]) and not torch.equal(lora, base) and not torch.equal(weaker, lora)
    together = model.generate_batch([args[0]] * 3, [args[1]] * 3, [args[2]] * 3,
                                    adapters=[BASE_ADAPTER, "default", "weaker"], **kw)
    for one, many in zip((base, lora, weaker), together):
        assert torch.equal(one, many)
    # Seeded sampling too: each row draws as its separate run does.
    with peft_model.disable_adapter():
        sb = model.generate(*args, max_frames=8, seed=3)
    peft_model.set_adapter("default")
    sl = model.generate(*args, max_frames=8, seed=3)
    pair = model.generate_batch([args[0]] * 2, [args[1]] * 2, [args[2]] * 2, adapters=[BASE_ADAPTER, "default"],
                                seeds=[3, 3], max_frames=8)
    assert torch.equal(pair[0], sb) and torch.equal(pair[1], sl)
    with pytest.raises(ValueError, match="not loaded"):
        model.generate_batch([None], [None], None, adapters=["nope"], max_frames=2)
    # During generation the LoRA layers' base linears read their weights by the row matmul; afterwards they
    # have their own forward back.
    bases = [m.base_layer for m in model.modules() if hasattr(m, "lora_A")]
    seen = []
    model.generate(*args, max_frames=3, seed=1, on_step=lambda s, sc: seen.append(all("forward" in vars(b) for b in bases)))
    assert seen and all(seen) and not any("forward" in vars(b) for b in bases)
