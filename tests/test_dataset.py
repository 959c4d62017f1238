"""core.training.dataset: the resumable batch plan and the DataLoader over it (workers change nothing)."""
from __future__ import annotations

import pytest
import torch

from core.training.dataset import BatchPlan, SongSet, batch_loader
from core.tokens import EMPTY

LENGTHS = [90, 40, 75, 30, 120, 55, 64]


@pytest.fixture(scope="module")
def songs():
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)
    rows = {"idx": [f"s{i}" for i in range(len(LENGTHS))], "num_frames": LENGTHS,
            "codes": [torch.randint(0, 16384, (3, n), generator=g).tolist() for n in LENGTHS],
            "prompt": [torch.randint(0, 16384, (3, 8), generator=g).tolist() for _ in LENGTHS],
            "lyrics": ["[intro-short] ; [verse] the night is young.we sing along ; [outro-short]"] * len(LENGTHS),
            "description": ["female, pop, piano"] * len(LENGTHS)}
    return SongSet(Dataset.from_dict(rows), max_frames=60, seed=3, random_crop=True, allow_random_crop=True)


def micro_batches(plan: BatchPlan, count: int) -> list[list[tuple[int, int]]]:
    out = []
    for b in plan:
        out.append(b)
        if len(out) == count:
            break
    return out


def test_plan_resumes_at_any_micro_batch_and_spans_epochs():
    full = micro_batches(BatchPlan(LENGTHS, 2, seed=3, bucket_size=2), 20)
    assert {e for b in full for _, e in b} == {0, 1, 2, 3, 4}  # 4 batches per epoch, so 20 span 5 epochs
    for start in (1, 4, 7, 13):
        assert micro_batches(BatchPlan(LENGTHS, 2, seed=3, bucket_size=2, start=start), 20 - start) == full[start:]
    assert len(BatchPlan(LENGTHS, 2, seed=3, bucket_size=2, start=3, stop=11)) == 8


def test_two_ranks_share_the_one_process_batches():
    one = micro_batches(BatchPlan(LENGTHS, 2, seed=3, bucket_size=4), 8)
    r0 = micro_batches(BatchPlan(LENGTHS, 1, seed=3, bucket_size=4, rank=0, world=2), 8)
    r1 = micro_batches(BatchPlan(LENGTHS, 1, seed=3, bucket_size=4, rank=1, world=2), 8)
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(b) for b in one]


def test_loader_workers_give_the_same_batches(songs):
    def batches(workers: int) -> list[dict]:
        plan = BatchPlan(LENGTHS, 2, seed=3, bucket_size=2, start=5, stop=13)
        return list(batch_loader(songs, plan, prompt_frames=4, version="v2", num_workers=workers))

    plain, forked = batches(0), batches(2)
    assert len(plain) == len(forked) == 8
    for a, b in zip(plain, forked):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k], k
    # the crop rule and padding hold in what the loader gives
    for b in plain:
        assert b["codes"].shape[1] == 3 and b["codes"].shape[-1] <= 60 and b["prompt"].shape[-1] == 4
        for row, n in enumerate(b["lengths"].tolist()):
            assert bool((b["codes"][row, :, n:] == EMPTY).all())
