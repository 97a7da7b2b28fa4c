"""A contract test generated from the data-source registry: every registered source loads its own example.

A new source (one module in edgekd/data/sources/) is tested the day it is registered: it must give an
example argument (``loader.example(folder) -> str``), and what it loads must be valid, deterministic data:
images (``x``, resizable) or texts (``texts``, one non-blank string per label; an image size is refused).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data import SOURCES, load_source
from edgekd.data.raw import content_hash
from edgekd.errors import ConfigError, EdgekdError


@pytest.mark.parametrize("name", SOURCES.names())
def test_every_source_loads_its_example(name, tmp_path):
    loader = SOURCES.get(name)
    assert callable(getattr(loader, "example", None)), f"data source {name!r} declares no example argument"
    arg = loader.example(tmp_path)
    raw = load_source(f"{name}:{arg}", base_dir=tmp_path)
    assert len(raw.y) > 0 and raw.y.dtype == np.int64
    assert raw.y.min() >= 0 and raw.y.max() < len(raw.class_names)
    again = load_source(f"{name}:{arg}", base_dir=tmp_path)  # a source is deterministic: same bytes, same hash
    assert content_hash(raw) == content_hash(again)
    if raw.texts is not None:
        assert raw.x is None and len(raw.texts) == len(raw.y)
        assert all(isinstance(t, str) and t.strip() for t in raw.texts)
        with pytest.raises(ConfigError, match="data.image_size"):
            load_source(f"{name}:{arg}", base_dir=tmp_path, image_size=(6, 6))
        return
    assert raw.x.ndim == 4 and raw.x.dtype in (np.float32, np.uint8), (raw.x.shape, raw.x.dtype)
    assert len(raw.x) == len(raw.y)
    resized = load_source(f"{name}:{arg}", base_dir=tmp_path, image_size=(6, 6))
    assert resized.x.shape[-2:] == (6, 6) and len(resized.x) == len(raw.x)


@pytest.mark.parametrize("name", SOURCES.names())
def test_every_source_names_a_missing_input(name, tmp_path):
    """A user error (exit 2 from the CLI), naming what was asked for, never a bare exception."""
    with pytest.raises(EdgekdError) as caught:
        load_source(f"{name}:no-such-thing", base_dir=tmp_path)
    assert "no-such-thing" in str(caught.value)
