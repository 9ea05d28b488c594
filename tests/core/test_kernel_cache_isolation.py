"""The test session's kernels go to the checkout's own folder, not the user's cache."""

import os
from pathlib import Path

from gradstep.engines.kernel_cache import cache_dir


def test_kernels_go_to_the_sessions_folder_not_the_users_cache():
    folder = cache_dir()
    assert str(folder) == os.environ["GRADSTEP_CACHE_DIR"]
    home_cache = Path(os.path.expanduser("~")) / ".cache"
    assert home_cache not in folder.resolve().parents
    assert folder.is_dir()
