"""Test-wide settings: nothing downloads, nothing phones home (the Hub push test sets its own endpoint),
and the shared fixtures are there: a missing ../shared fails the session instead of skipping tests."""
import os
import shutil

import pytest

from tests.paths import REQUIRED, SHARED, TINY_CKPT, TINY_FIXTURE

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# "auto" precision on a CPU follows the CPU (bf16 where its bf16 matmul is faster): the suite pins fp32 so its
# figures are the same on every CPU; tests/test_precision.py and one training test set the verdict themselves.
os.environ.setdefault("SONGGEN_CPU_PRECISION", "fp32")
# The suite is a busy machine (servers, browsers and trainers beside each other on few cores): OpenMP threads sleep
# at once, as core/threads.py chooses on a shared machine (tests/test_threads.py checks core's own choice).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import core  # noqa: E402,F401  (before any test module loads torch)


def pytest_sessionstart(session):
    missing = [str(p) for p in REQUIRED if not p.is_file()]
    if missing:
        raise pytest.UsageError(
            f"the shared test fixtures are missing: {', '.join(missing)}. The tests read them from {SHARED} "
            "(the folder beside this repository); put the project's shared/ folder there.")
    # CI (.ci/run sets SONGGEN_CI=1) runs every test: the browser tests need Debian's chromium
    if os.environ.get("SONGGEN_CI") == "1" and not shutil.which("chromium") and not os.path.isfile("/usr/bin/chromium"):
        raise pytest.UsageError("CI needs /usr/bin/chromium for the browser tests (apt-get install chromium)")


@pytest.fixture(scope="module")
def one_thread():
    """Torch at one thread for a module: on the 2 shared cores, oversubscribed OpenMP threads make the
    many small ops of the tiny models several times slower than one thread."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- the tiny official fixture (../shared/fixtures/songgen-tiny-v2): its checkpoint and reference cases
def _load_tiny():
    from core.model import LeLM
    return LeLM.from_pretrained(TINY_CKPT, runtime_root=TINY_FIXTURE)


@pytest.fixture(scope="module")
def tiny():
    """The tiny official checkpoint, loaded once per test module; tests that change it put it back."""
    return _load_tiny()


@pytest.fixture()
def fresh_tiny():
    """A test's own copy of the tiny checkpoint, for tests that train it or wrap it in adapters."""
    return _load_tiny()


@pytest.fixture(scope="module")
def tiny_cases():
    """The official code's inputs and outputs for the tiny checkpoint (cases.pt)."""
    import torch
    return torch.load(TINY_FIXTURE / "cases.pt", weights_only=True)
