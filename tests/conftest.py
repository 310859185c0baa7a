import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import matplotlib  # noqa: E402
import pytest  # noqa: E402

# No figure windows in the unit tests. Not through the MPLBACKEND variable: `make test`
# runs the notebooks in the same pytest session, and their kernels inherit the
# environment (a kernel shows figures inline, as the book needs, only when it is unset).
matplotlib.use("Agg")


@pytest.fixture(scope="session")
def small_task():
    from attnbook.tasks import NumberTask

    return NumberTask(max_digits=6, train_per_length=200, eval_per_length=20, seed=3)
