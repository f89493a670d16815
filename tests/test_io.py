import os
import stat

import numpy as np
import pytest

from lorex import io
from lorex.errors import LorexError


def test_atomic_files_have_normal_permissions_and_no_temporaries(tmp_path):
    umask = os.umask(0o022)
    try:
        io.save_json(tmp_path / "a.json", {"x": 1})
        io.save_tree(tmp_path / "b.npz", {"w": np.ones(3)})
    finally:
        os.umask(umask)
    for name in ("a.json", "b.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.npz"]


def test_failed_write_keeps_old_file(tmp_path):
    io.save_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(TypeError):
        io.save_json(tmp_path / "a.json", {"x": object()})
    assert io.load_json(tmp_path / "a.json") == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_load_tree_errors(tmp_path):
    io.save_tree(tmp_path / "t.npz", {"w": np.ones(3, np.float32)})
    with pytest.raises(LorexError, match="another config"):
        io.load_tree(tmp_path / "t.npz", {"w": np.ones(4, np.float32)})
    with pytest.raises(LorexError, match="another config"):
        io.load_tree(tmp_path / "t.npz", {"v": np.ones(3, np.float32)})
    np.testing.assert_array_equal(io.load_tree(tmp_path / "t.npz", {"w": np.zeros(3, np.float32)})["w"], np.ones(3))


def test_the_cli_keeps_a_persistent_compilation_cache(tmp_path):
    """`lorex` writes compiled programs into $LOREX_COMPILATION_CACHE (and writes none with `off`)."""
    import os
    import subprocess
    import sys

    code = ("from lorex.cli import main; import sys; sys.exit(main(['tune', '--task', 'linreg', '--steps', '20', "
            "'--tuning-seeds', '2', '--optimizers', 'momentum']))")
    cache = tmp_path / "cache"
    for setting in ("off", str(cache)):
        env = {**os.environ, "LOREX_COMPILATION_CACHE": setting}
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=300)
        if setting == "off":
            assert not cache.exists()
    assert cache.is_dir() and any(cache.iterdir())
