"""edgekd.data: sources, validation, hashing, splitting, normalisation, augmentation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd.data import (
    SOURCES,
    DataBundle,
    Normalization,
    RawData,
    Split,
    augment_batch,
    content_hash,
    load_source,
    prepare_data,
    stratified_split,
    validate,
)
from edgekd.errors import ConfigError, DataError


def toy(n_per_class: int = 10, classes: int = 3, shape=(1, 4, 4), seed: int = 0) -> RawData:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class).astype(np.int64)
    x = rng.random((len(y), *shape), dtype=np.float32)
    return RawData(x, y, [f"c{i}" for i in range(classes)], "toy")


def save_npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def make_folder(root: Path, sizes: dict[str, list[tuple[int, int]]], mode: str = "L") -> Path:
    """One subfolder per class with PNGs of the given (W, H) sizes; pixel value encodes the class."""
    for label, (name, dims) in enumerate(sorted(sizes.items())):
        (root / name).mkdir(parents=True)
        for i, size in enumerate(dims):
            colour = 40 * (label + 1) if mode == "L" else (40 * (label + 1), 0, 255)
            Image.new(mode, size, colour).save(root / name / f"{i}.png")
    return root


# ---------------------------------------------------------------- sources


@pytest.fixture(scope="module")
def mnist() -> RawData:
    return load_source("builtin:mnist5k")


def test_mnist5k(mnist):
    assert mnist.x.shape == (5000, 1, 28, 28) and mnist.x.dtype == np.float32
    assert mnist.y.dtype == np.int64 and mnist.num_classes == 10 and mnist.input_shape == (1, 28, 28)
    assert mnist.x.min() == 0.0 and mnist.x.max() == 1.0
    assert np.bincount(mnist.y).tolist() == [500] * 10
    assert mnist.source == "builtin:mnist5k"


def test_digits_and_resize():
    raw = load_source("builtin:digits")
    assert raw.x.shape == (1797, 1, 8, 8) and raw.num_classes == 10
    assert raw.x.min() == 0.0 and raw.x.max() == 1.0
    big = load_source("builtin:digits", image_size=(16, 12))
    assert big.x.shape == (1797, 1, 16, 12) and big.x.dtype == np.float32
    assert 0.0 <= big.x.min() and big.x.max() <= 1.0 + 1e-6


def test_unknown_builtin_lists_choices():
    with pytest.raises(ConfigError, match="data.source.*'nope'.*digits, mnist5k"):
        load_source("builtin:nope")


def test_npz_uint8_hw(tmp_path):
    x = np.arange(6 * 5 * 5, dtype=np.int64).reshape(6, 5, 5) % 256
    spec = save_npz(tmp_path / "a.npz", x=x.astype(np.uint8), y=np.array([0, 1, 2, 0, 1, 2]))
    raw = load_source(spec)
    assert raw.x.shape == (6, 1, 5, 5) and raw.x.dtype == np.float32
    np.testing.assert_allclose(raw.x[:, 0], x / 255.0, rtol=1e-6)
    assert raw.class_names == ["0", "1", "2"]


def test_npz_float_nchw_kept_and_relative_path(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 3, 6, 6)).astype(np.float64) * 10  # not [0, 1]: kept as given
    save_npz(tmp_path / "b.npz", x=x, y=np.array([1, 0, 1, 0]), class_names=np.array(["cat", "dog"]))
    raw = load_source("npz:b.npz", base_dir=tmp_path)
    assert raw.x.shape == (4, 3, 6, 6) and raw.class_names == ["cat", "dog"]
    np.testing.assert_allclose(raw.x, x.astype(np.float32))
    assert raw.source == "npz:b.npz"
    assert load_source("npz:b.npz", base_dir=tmp_path, image_size=(3, 3)).x.shape == (4, 3, 3, 3)


def test_imagefolder_gray(tmp_path):
    root = make_folder(tmp_path / "imgs", {"b": [(7, 5)] * 2, "a": [(7, 5)] * 3})
    raw = load_source("imagefolder:imgs", base_dir=tmp_path)
    assert raw.class_names == ["a", "b"]  # sorted folder names
    assert raw.x.shape == (5, 1, 5, 7)  # (N, C, H, W) from PIL's (W, H)
    assert raw.y.tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_allclose(raw.x[0], 40 / 255, rtol=1e-6)
    np.testing.assert_allclose(raw.x[4], 80 / 255, rtol=1e-6)
    assert raw.source == "imagefolder:imgs" and root.exists()


def test_imagefolder_rgb_when_any_colour_and_resize(tmp_path):
    make_folder(tmp_path / "g", {"x": [(8, 8)], "y": [(8, 8)]})
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "g" / "y" / "red.png")
    raw = load_source(f"imagefolder:{tmp_path / 'g'}", image_size=(4, 6))
    assert raw.x.shape == (3, 3, 4, 6)
    np.testing.assert_allclose(raw.x[2, :, 0, 0], [1.0, 0.0, 0.0])  # red.png, channels in RGB order


def test_imagefolder_mixed_sizes_need_image_size(tmp_path):
    make_folder(tmp_path / "m", {"a": [(8, 8)], "b": [(10, 6)]})
    with pytest.raises(DataError, match=r"images differ in size.*10x6.*data.image_size"):
        load_source("imagefolder:m", base_dir=tmp_path)
    raw = load_source("imagefolder:m", base_dir=tmp_path, image_size=(5, 5))
    assert raw.x.shape == (2, 1, 5, 5)


def write_module(path: Path, body: str) -> None:
    path.write_text(textwrap.dedent(body))


def test_python_arrays(tmp_path):
    write_module(tmp_path / "mydata.py", """
        import numpy as np
        def make():
            x = np.zeros((6, 1, 3, 3), dtype=np.uint8) + 255
            return x, np.array([0, 1, 0, 1, 0, 1])
    """)
    raw = load_source("python:mydata:make", base_dir=tmp_path)
    assert raw.x.shape == (6, 1, 3, 3) and raw.x.max() == 1.0 and raw.class_names == ["0", "1"]


def test_python_dataset(tmp_path):
    write_module(tmp_path / "dsmod.py", """
        import torch
        from torch.utils.data import Dataset
        class Toy(Dataset):
            classes = ["even", "odd"]
            def __len__(self):
                return 8
            def __getitem__(self, i):
                return torch.full((2, 4, 4), float(i) / 8), torch.tensor(i % 2)
        def build():
            return Toy()
    """)
    raw = load_source("python:dsmod:build", base_dir=tmp_path)
    assert raw.x.shape == (8, 2, 4, 4) and raw.y.tolist() == [0, 1] * 4
    assert raw.class_names == ["even", "odd"]
    assert raw.x[3, 1, 2, 2] == pytest.approx(3 / 8)


def test_python_errors(tmp_path):
    write_module(tmp_path / "bad.py", "def make():\n    return 42\n")
    with pytest.raises(DataError, match="no function 'nothere'"):
        load_source("python:bad:nothere", base_dir=tmp_path)
    with pytest.raises(DataError, match="returned int; expected"):
        load_source("python:bad:make", base_dir=tmp_path)
    with pytest.raises(DataError, match="cannot import module 'no_such_mod_xyz'"):
        load_source("python:no_such_mod_xyz:f", base_dir=tmp_path)


def test_registry_has_every_scheme():
    assert {"builtin", "imagefolder", "npz", "python"} <= set(SOURCES.names())  # one module each; more may be added


# ---------------------------------------------------------------- bad input


def test_unknown_scheme_names_key_and_schemes():
    with pytest.raises(ConfigError) as err:
        load_source("s3:bucket/x", key="data.source")
    msg = str(err.value)
    assert "data.source" in msg and "'s3'" in msg and "builtin, imagefolder, npz, python" in msg
    with pytest.raises(ConfigError, match="SCHEME:ARG"):
        load_source("mnist")


def test_nan_and_inf_counted_with_first_index():
    raw = toy()
    raw.x[4, 0, 1, 2] = np.nan
    raw.x[7, 0, 0, 0] = np.inf
    with pytest.raises(DataError) as err:
        validate(raw)
    msg = str(err.value)
    assert "2 non-finite" in msg and "1 NaN, 1 inf" in msg and "sample 4" in msg and "toy" in msg


def test_nan_from_npz_file(tmp_path):
    x = np.zeros((4, 2, 2), np.float32)
    x[2, 1, 1] = np.nan
    spec = save_npz(tmp_path / "n.npz", x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"data.source: npz:.*n.npz.*1 non-finite.*sample 2"):
        load_source(spec)


def test_label_out_of_range():
    raw = toy()
    raw.y[5] = 7
    with pytest.raises(DataError, match=r"label 7 at index 5 is outside 0..2"):
        validate(raw)
    raw.y[5] = -1
    with pytest.raises(DataError, match=r"label -1 at index 5"):
        validate(raw)


def test_empty_class_is_named():
    raw = toy()
    raw.class_names = ["c0", "c1", "c2", "ghost"]
    with pytest.raises(DataError, match=r"class 'ghost' \(label 3\) has no samples"):
        validate(raw)


def test_fewer_than_two_classes():
    raw = toy(classes=1)
    with pytest.raises(DataError, match="expected at least 2"):
        validate(raw)


def test_bad_shapes(tmp_path):
    with pytest.raises(DataError, match=r"x must be 3-D .* got shape \(6,\)"):
        load_source(save_npz(tmp_path / "flat.npz", x=np.zeros(6), y=np.zeros(6, int)))
    with pytest.raises(DataError, match="x has 6 samples but y has 5 labels"):
        load_source(save_npz(tmp_path / "len.npz", x=np.zeros((6, 2, 2)), y=np.zeros(5, int)))
    with pytest.raises(DataError, match=r"y must be 1-D .* got shape \(6, 1\)"):
        load_source(save_npz(tmp_path / "y2.npz", x=np.zeros((6, 2, 2)), y=np.zeros((6, 1), int)))
    raw = toy()
    raw.x = raw.x[:, 0, 0, 0]
    with pytest.raises(DataError, match=r"got shape \(30,\)"):
        validate(raw)


def test_bad_dtypes(tmp_path):
    y = np.array([0.0, 1.0, 1.5, 0.0])
    with pytest.raises(DataError, match=r"integer class labels.*1\.5 at index 2"):
        load_source(save_npz(tmp_path / "f.npz", x=np.zeros((4, 2, 2)), y=y))
    ok = load_source(save_npz(tmp_path / "g.npz", x=np.zeros((4, 2, 2)), y=np.array([0.0, 1.0, 1.0, 0.0])))
    assert ok.y.dtype == np.int64  # integral floats are accepted
    with pytest.raises(DataError, match="x must be numeric.*<U1"):
        load_source(save_npz(tmp_path / "s.npz", x=np.full((2, 2, 2), "a"), y=np.array([0, 1])))


def test_missing_file_and_dir(tmp_path):
    with pytest.raises(DataError, match=r"npz:missing.npz: file .*missing.npz not found"):
        load_source("npz:missing.npz", base_dir=tmp_path)
    with pytest.raises(DataError, match=r"directory .*nodir not found"):
        load_source("imagefolder:nodir", base_dir=tmp_path)
    with pytest.raises(DataError, match=r"python file .*gone.py not found"):
        load_source("python:gone.py:f", base_dir=tmp_path)


def test_corrupt_png_names_file(tmp_path):
    make_folder(tmp_path / "c", {"a": [(4, 4)], "b": [(4, 4)]})
    (tmp_path / "c" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"cannot read image .*broken.png"):
        load_source("imagefolder:c", base_dir=tmp_path)
    good = tmp_path / "c" / "a" / "0.png"
    (tmp_path / "c" / "a" / "truncated.png").write_bytes(good.read_bytes()[:40])
    (tmp_path / "c" / "b" / "broken.png").unlink()
    with pytest.raises(DataError, match="truncated.png"):
        load_source("imagefolder:c", base_dir=tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    make_folder(tmp_path / "e", {"a": [(4, 4)], "b": [(4, 4)]})
    (tmp_path / "e" / "zebra").mkdir()
    with pytest.raises(DataError, match="'zebra'.*no samples"):
        load_source("imagefolder:e", base_dir=tmp_path)


def test_corrupt_npz_names_file_and_missing_array(tmp_path):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(DataError, match=r"corrupt.npz is not a readable .npz"):
        load_source(f"npz:{bad}")
    with pytest.raises(DataError, match=r"nolabels.npz has no array 'y' \(found: images, x\)"):
        load_source(save_npz(tmp_path / "nolabels.npz", x=np.zeros((2, 2, 2)), images=np.zeros(2)))


def test_bad_image_size():
    with pytest.raises(ConfigError, match="data.image_size"):
        load_source("builtin:digits", image_size=(0, 8))


# ---------------------------------------------------------------- hash


def test_content_hash_stable_and_sensitive():
    a, b = toy(), toy()
    assert content_hash(a) == content_hash(b)
    assert len(content_hash(a)) == 64
    b.x[3, 0, 2, 1] += 1e-3
    assert content_hash(a) != content_hash(b)
    c = toy()
    c.class_names = ["c0", "c1", "renamed"]
    assert content_hash(a) != content_hash(c)
    d = toy()
    d.y[0], d.y[-1] = d.y[-1], d.y[0]
    assert content_hash(a) != content_hash(d)


KNOWN_HASH_PREFIX = "3b19824bbc202239"


def test_content_hash_known_value():
    # pinned so a change to the hashing scheme (which would invalidate every cache) is deliberate
    raw = RawData(np.zeros((2, 1, 1, 1), np.float32), np.array([0, 1]), ["a", "b"], "x")
    assert content_hash(raw)[:16] == KNOWN_HASH_PREFIX


# ---------------------------------------------------------------- split


def labels(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def test_split_deterministic_and_seed_dependent():
    y = labels([50, 30, 20])
    a, b, c = stratified_split(y, seed=1), stratified_split(y, seed=1), stratified_split(y, seed=2)
    assert a.digest() == b.digest() and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "val", "test"))
    assert a.digest() != c.digest() and not np.array_equal(a.train, c.train)
    assert Split.from_dict(a.to_dict()).digest() == a.digest()
    assert a.to_dict()["sizes"] == {"train": 70, "val": 10, "test": 20}


def test_split_disjoint_covering_sorted_and_stratified():
    y = labels([503, 121, 77, 299])
    s = stratified_split(y, fractions=(0.6, 0.15, 0.25), seed=0)
    parts = [s.train, s.val, s.test]
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(y)))  # disjoint and covering
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    n = len(y)
    for part, frac in zip(parts, s.fractions):
        assert abs(len(part) - n * frac) < 1  # overall sizes match the fractions
        share = np.bincount(y[part], minlength=4) / len(part)
        np.testing.assert_allclose(share, np.bincount(y) / n, atol=0.02)


def test_split_small_classes_in_every_split():
    y = labels([3, 4, 5, 100])
    s = stratified_split(y, seed=3)
    for part in (s.train, s.val, s.test):
        assert set(y[part].tolist()) == {0, 1, 2, 3}
    assert len(s.train) + len(s.val) + len(s.test) == len(y)


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.0), (0.7, 0.2, 0.2), (0.5, 0.5), (-0.1, 0.6, 0.5)])
def test_split_bad_fractions(fractions):
    with pytest.raises(ConfigError, match="data.split"):
        stratified_split(labels([10, 10]), fractions=fractions)


# ---------------------------------------------------------------- normalisation and bundle


def test_normalization_fit_apply_roundtrip():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[[[3.0]], [[-1.0]]], scale=[[[2.0]], [[0.5]]], size=(64, 2, 5, 5)).astype(np.float32)
    norm = Normalization.fit(x)
    out = norm.apply(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    t = norm.apply(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.from_numpy(out), atol=1e-5)
    assert Normalization.from_dict(norm.to_dict()) == norm
    flat = Normalization.fit(np.ones((3, 1, 2, 2), np.float32))
    assert flat.std == [1e-6] and np.isfinite(flat.apply(np.ones((1, 1, 2, 2)))).all()


def test_prepare_data_fits_on_train_only(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((200, 1, 4, 4)).astype(np.float32)
    y = np.repeat([0, 1], 100)
    spec = save_npz(tmp_path / "d.npz", x=x, y=y)
    bundle = prepare_data(spec, seed=5, fractions=(0.5, 0.25, 0.25))
    assert isinstance(bundle, DataBundle) and bundle.num_classes == 2 and bundle.input_shape == (1, 4, 4)
    assert bundle.x_train.dtype == torch.float32 and bundle.y_train.dtype == torch.int64
    assert (len(bundle.x_train), len(bundle.x_val), len(bundle.x_test)) == (100, 50, 50)
    # statistics come from the train rows alone, so train is exactly standardised
    expected = Normalization.fit(x[bundle.split.train])
    assert bundle.normalization == expected
    assert abs(float(bundle.x_train.mean())) < 1e-5 and abs(float(bundle.x_train.std(unbiased=False)) - 1) < 1e-4
    assert bundle.normalization != Normalization.fit(x)
    # rows follow the split's (sorted) index order
    np.testing.assert_allclose(bundle.x_test.numpy(), expected.apply(x[bundle.split.test]), atol=1e-6)
    assert bundle.y_val.tolist() == y[bundle.split.val].tolist()
    prov = bundle.provenance()
    assert prov["sizes"] == {"train": 100, "val": 50, "test": 50} and prov["seed"] == 5
    assert prov["split_digest"] == bundle.split.digest() and prov["source"] == spec
    assert prov["data_hash"] == bundle.data_hash == content_hash(load_source(spec))
    assert prov["normalization"] == expected.to_dict()
    assert prepare_data(spec, seed=5, fractions=(0.5, 0.25, 0.25)).provenance() == prov


# ---------------------------------------------------------------- augmentation


def test_augment_deterministic_and_shifts():
    x = torch.zeros(16, 1, 9, 9) - 0.5  # background -0.5 (as after normalisation)
    x[:, :, 3:6, 3:6] = 2.0
    out1 = augment_batch(x, max_shift=2, generator=torch.Generator().manual_seed(7))
    out2 = augment_batch(x, max_shift=2, generator=torch.Generator().manual_seed(7))
    out3 = augment_batch(x, max_shift=2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    assert out1.shape == x.shape
    assert not torch.equal(out1, x)  # at least one sample moved
    # a pure translation: the square stays whole and vacated pixels are background
    assert torch.all((out1 == 2.0).sum(dim=(1, 2, 3)) == 9)
    assert set(out1.unique().tolist()) == {-0.5, 2.0}
    # every sample moved by at most 2 pixels in each direction
    for sample in out1:
        rows, cols = torch.nonzero(sample[0] == 2.0, as_tuple=True)
        assert abs(int(rows.min()) - 3) <= 2 and abs(int(cols.min()) - 3) <= 2


def test_augment_shift_direction_and_zero():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    gen = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(-1, 2, (2, 1), generator=torch.Generator().manual_seed(0)).flatten().tolist()
    out = augment_batch(x, max_shift=1, generator=gen)
    shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    inner = (slice(1, 4), slice(1, 4))  # away from the wrapped/padded border
    assert torch.equal(out[0, 0][inner], shifted[0, 0][inner])
    assert augment_batch(x, max_shift=0, generator=gen) is x
