import os
import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message=".*QP solver.*")
os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

SHARED = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture
def shared_data():
    if not os.path.isdir(SHARED):
        pytest.skip(f"real data folder {SHARED} is absent (a user's clone has no ../shared)")
    return SHARED
