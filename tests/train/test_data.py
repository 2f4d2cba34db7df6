"""Tests for hardstat.train.data: spec parsing, synthetic, npz, folder, CIFAR errors, subsets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from hardstat.classes import CIFAR10_CLASSES, CIFAR100_CLASSES, ClassInfo  # noqa: E402
from hardstat.errors import DatasetError  # noqa: E402
from hardstat.train.data import (  # noqa: E402
    CIFAR10_MEAN,
    Dataset,
    ImageSplit,
    channel_stats,
    load_dataset,
    parse_dataset_spec,
    synthetic_images,
)

SHARED_CIFAR10 = Path(__file__).parents[2].parent / "shared/data/cifar10"


def _all(split: ImageSplit) -> torch.Tensor:
    return split.get_batch(np.arange(len(split)))


def _one_line(exc: pytest.ExceptionInfo[DatasetError]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Spec parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("synthetic", ("synthetic", None)),
        ("synthetic:100", ("synthetic", "100")),
        ("  Synthetic:64 ", ("synthetic", "64")),
        ("npz:/data/c10", ("npz", "/data/c10")),
        ("NPZ: /data/c10 ", ("npz", "/data/c10")),
        ("npz:/odd:name", ("npz", "/odd:name")),
        ("cifar10", ("cifar10", None)),
        ("cifar100:~/data", ("cifar100", "~/data")),
        ("folder:/imagenet", ("folder", "/imagenet")),
    ],
)
def test_parse_good_specs(spec: str, expected: tuple[str, str | None]) -> None:
    assert parse_dataset_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("", "synthetic[:N]"),
        ("   ", "synthetic[:N]"),
        ("imagenet", "unknown dataset"),
        ("imagenet:/x", "folder:PATH"),
        ("npz", "npz:PATH"),
        ("folder", "folder:PATH"),
        ("npz:", "nothing after ':'"),
        ("cifar10:", "nothing after ':'"),
        ("synthetic:abc", "whole number"),
        ("synthetic:5", ">= 10"),
        ("synthetic:-20", "whole number"),
        ("synthetic:1e3", "whole number"),
    ],
)
def test_parse_bad_specs(spec: str, hint: str) -> None:
    with pytest.raises(DatasetError) as exc:
        parse_dataset_spec(spec)
    assert hint in _one_line(exc)


def test_load_rejects_bad_spec_and_arguments() -> None:
    with pytest.raises(DatasetError):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="image_size"):
        load_dataset("synthetic", image_size=0)
    with pytest.raises(DatasetError, match="subset"):
        load_dataset("synthetic", subset=0)


# ---------------------------------------------------------------------------------------------
# Synthetic
# ---------------------------------------------------------------------------------------------


def test_synthetic_shapes_labels_classes() -> None:
    ds = load_dataset("synthetic")
    assert isinstance(ds, Dataset)
    assert (ds.name, ds.spec) == ("synthetic", "synthetic:512")
    assert ds.test is not None
    assert (len(ds.train), len(ds.test)) == (512, 256)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.classes[5].name == "dog" and ds.classes[5].synset == "dog.n.01"
    for split in (ds.train, ds.test):
        x = _all(split)
        assert x.dtype == torch.uint8 and x.shape == (len(split), 3, 32, 32)
        assert x.is_contiguous() and x.device.type == "cpu"
        assert split.image_size == 32 and not split.lazy
        assert split.labels.dtype == np.int64 and split.sample_ids.dtype == np.int64
        assert split.labels.min() >= 0 and split.labels.max() <= 9
        np.testing.assert_array_equal(split.sample_ids, np.arange(len(split)))
        counts = np.bincount(split.labels, minlength=10)
        assert counts.max() - counts.min() <= 1  # balanced
    # Not trivially identical: every image is distinct, and pixels use the full range.
    flat = _all(ds.train).flatten(1)
    assert len(torch.unique(flat, dim=0)) == len(flat)
    assert flat.float().std() > 20


def test_synthetic_is_deterministic_in_seed() -> None:
    a, b = load_dataset("synthetic:100", seed=7), load_dataset("synthetic:100", seed=7)
    c = load_dataset("synthetic:100", seed=8)
    assert torch.equal(_all(a.train), _all(b.train))
    assert a.test is not None and b.test is not None
    assert torch.equal(_all(a.test), _all(b.test))
    np.testing.assert_array_equal(a.train.labels, b.train.labels)
    assert not torch.equal(_all(a.train), _all(c.train))
    # train and test are different draws
    assert not torch.equal(_all(a.train)[:50], _all(a.test))


def test_synthetic_images_shapes() -> None:
    images, labels = synthetic_images(2000, seed=0)
    assert images.shape == (2000, 3, 32, 32) and labels.shape == (2000,)


def test_synthetic_nearest_class_mean_separability() -> None:
    """Raw pixels separate the classes clearly but not perfectly: structure to learn."""
    ds = load_dataset("synthetic:2000", seed=0)
    assert ds.test is not None

    def pixels(split: ImageSplit) -> torch.Tensor:
        return F.avg_pool2d(_all(split).float() / 255.0, 4).flatten(1)  # (N, 3*8*8)

    x_train, x_test = pixels(ds.train), pixels(ds.test)
    y_train = torch.from_numpy(ds.train.labels)
    y_test = torch.from_numpy(ds.test.labels)
    means = torch.stack([x_train[y_train == c].mean(0) for c in range(10)])  # (10, D)
    accuracy = (torch.cdist(x_test, means).argmin(1) == y_test).float().mean().item()
    assert 0.5 < accuracy < 0.99


def test_mean_std_match_a_direct_computation() -> None:
    ds = load_dataset("synthetic:60")
    x = _all(ds.train).double() / 255.0
    np.testing.assert_allclose(ds.mean, x.mean(dim=(0, 2, 3)).numpy(), atol=1e-6)
    np.testing.assert_allclose(ds.std, x.std(dim=(0, 2, 3), unbiased=False).numpy(), atol=1e-6)


def test_channel_stats_of_constant_images_stay_finite() -> None:
    images = torch.full((4, 3, 8, 8), 51, dtype=torch.uint8)
    split = ImageSplit(
        labels=np.zeros(4, dtype=np.int64),
        sample_ids=np.arange(4, dtype=np.int64),
        image_size=8,
        images=images,
    )
    mean, std = channel_stats(split)
    np.testing.assert_allclose(mean, (0.2, 0.2, 0.2), atol=1e-9)
    assert all(s > 0 for s in std)


def test_image_size_resizes_in_memory_splits() -> None:
    ds = load_dataset("synthetic:20", image_size=16)
    assert ds.test is not None
    assert ds.train.image_size == 16 and ds.test.image_size == 16
    assert ds.train.get_batch(np.array([0, 3])).shape == (2, 3, 16, 16)
    assert ds.test.get_batch(np.array([1])).shape == (1, 3, 16, 16)


# ---------------------------------------------------------------------------------------------
# ImageSplit
# ---------------------------------------------------------------------------------------------


def test_get_batch_order_bounds_and_empty() -> None:
    ds = load_dataset("synthetic:20")
    x = _all(ds.train)
    batch = ds.train.get_batch(np.array([5, 0, 5]))
    assert torch.equal(batch, x[[5, 0, 5]])
    assert ds.train.get_batch(np.array([], dtype=np.int64)).shape == (0, 3, 32, 32)
    with pytest.raises(IndexError):
        ds.train.get_batch(np.array([20]))
    with pytest.raises(IndexError):
        ds.train.get_batch(np.array([-1]))
    with pytest.raises(ValueError):
        ds.train.get_batch(np.array([[0, 1]]))


def test_image_split_validates_construction() -> None:
    labels = np.zeros(2, dtype=np.int64)
    ids = np.arange(2, dtype=np.int64)
    images = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match="exactly one"):
        ImageSplit(labels, ids, 4, images=images, files=("a", "b"))
    with pytest.raises(ValueError, match="exactly one"):
        ImageSplit(labels, ids, 4)
    with pytest.raises(ValueError, match="int64"):
        ImageSplit(labels.astype(np.int32), ids, 4, images=images)
    with pytest.raises(ValueError, match="uint8"):
        ImageSplit(labels, ids, 4, images=images.float())


def test_dataset_is_frozen() -> None:
    ds = load_dataset("synthetic:20")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------------


def _arrays(n: int, size: int = 8, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % classes
    return images, labels


def test_npz_directory_with_test_and_classes(tmp_path: Path) -> None:
    images, labels = _arrays(30)
    test_images, test_labels = _arrays(12, seed=1)
    np.savez_compressed(tmp_path / "train.npz", images=images, labels=labels)
    np.savez(tmp_path / "test.npz", images=test_images, labels=test_labels.astype(np.int32))
    (tmp_path / "classes.txt").write_text("red\ngreen\nblue\n")

    ds = load_dataset(f"npz:{tmp_path}")
    assert ds.name == "npz" and ds.spec == f"npz:{tmp_path.resolve()}"
    assert [c.name for c in ds.classes] == ["red", "green", "blue"]
    assert all(c.synset is None and c.wnid is None for c in ds.classes)
    assert ds.test is not None and len(ds.train) == 30 and len(ds.test) == 12
    # HWC on disk -> CHW in memory, same pixels.
    batch = ds.train.get_batch(np.array([3, 7]))
    assert batch.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(batch.numpy(), images[[3, 7]].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.test.labels, test_labels)
    assert ds.test.labels.dtype == np.int64
    expected_mean = images.reshape(-1, 3).mean(0) / 255.0
    np.testing.assert_allclose(ds.mean, expected_mean, atol=1e-9)


def test_npz_single_file_is_train_only(tmp_path: Path) -> None:
    images, labels = _arrays(10, classes=4)
    file = tmp_path / "data.npz"
    np.savez(file, images=images, labels=labels)
    ds = load_dataset(f"npz:{file}")
    assert ds.test is None and len(ds.train) == 10
    assert [c.name for c in ds.classes] == ["class_0", "class_1", "class_2", "class_3"]


@pytest.mark.parametrize(
    ("table", "name"), [(CIFAR10_CLASSES, "cifar10"), (CIFAR100_CLASSES, "cifar100")]
)
def test_npz_with_cifar_names_uses_cifar_tables(
    tmp_path: Path, table: tuple[ClassInfo, ...], name: str
) -> None:
    images, labels = _arrays(len(table), classes=len(table))
    np.savez(tmp_path / "train.npz", images=images, labels=labels)
    (tmp_path / "classes.txt").write_text("\n".join(c.name for c in table) + "\n")
    ds = load_dataset(f"npz:{tmp_path}")
    assert ds.classes is table, name
    assert all(c.synset is not None and c.wnid is not None for c in ds.classes)


def test_npz_wnid_class_names_set_wnid(tmp_path: Path) -> None:
    images, labels = _arrays(6, classes=2)
    np.savez(tmp_path / "train.npz", images=images, labels=labels)
    (tmp_path / "classes.txt").write_text("n02084071\nsomething\n")
    ds = load_dataset(f"npz:{tmp_path}")
    assert ds.classes[0].wnid == "n02084071" and ds.classes[0].name == "n02084071"
    assert ds.classes[1].wnid is None


def test_npz_non_square_is_centre_cropped_and_resized(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 6, 10, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", images=images, labels=np.zeros(4, dtype=np.int64))
    ds = load_dataset(f"npz:{tmp_path}")
    np.testing.assert_array_equal(_all(ds.train).numpy(), images[:, :, 2:8].transpose(0, 3, 1, 2))
    assert load_dataset(f"npz:{tmp_path}", image_size=12).train.image_size == 12


@pytest.mark.parametrize(
    ("images", "labels", "hint"),
    [
        (np.zeros((4, 8, 8, 3), np.float32), np.zeros(4, np.int64), "uint8"),
        (np.zeros((4, 3, 8, 8), np.uint8), np.zeros(4, np.int64), "N x H x W x 3"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64), "N x H x W x 3"),
        (np.zeros((4, 8, 8, 3), np.uint8), np.zeros(5, np.int64), "4 images but 5 labels"),
        (np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.float32), "integer"),
        (np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, -1, 0]), ">= 0"),
        (np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0, np.int64), "no images"),
    ],
)
def test_npz_bad_arrays(tmp_path: Path, images: np.ndarray, labels: np.ndarray, hint: str) -> None:
    np.savez(tmp_path / "train.npz", images=images, labels=labels)
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"npz:{tmp_path}")
    assert hint in _one_line(exc)


def test_npz_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'missing'}")
    with pytest.raises(DatasetError, match=r"no train\.npz"):
        load_dataset(f"npz:{tmp_path}")
    (tmp_path / "train.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(f"npz:{tmp_path}")
    np.savez(tmp_path / "train.npz", pictures=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="no images or labels"):
        load_dataset(f"npz:{tmp_path}")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DatasetError, match="single array"):
        load_dataset(f"npz:{tmp_path / 'single.npy'}")


def test_npz_labels_beyond_class_names(tmp_path: Path) -> None:
    images, labels = _arrays(9, classes=3)
    np.savez(tmp_path / "train.npz", images=images, labels=labels)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"npz:{tmp_path}")
    assert "names only 2 classes" in _one_line(exc)


# ---------------------------------------------------------------------------------------------
# folder
# ---------------------------------------------------------------------------------------------


def _png(path: Path, size: tuple[int, int], color: tuple[int, int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    image.convert(mode).save(path)


def _tree(root: Path) -> None:
    # n02084071 = dog, n02121620 = cat; odd sizes and a grayscale PNG to exercise resizing.
    _png(root / "train/n02084071/a.png", (40, 30), (200, 10, 10))
    _png(root / "train/n02084071/b.PNG", (20, 50), (190, 20, 10))
    _png(root / "train/n02084071/nested/c.png", (16, 16), (180, 30, 30))
    _png(root / "train/n02121620/a.jpg", (24, 24), (10, 10, 200))
    _png(root / "train/n02121620/b.png", (64, 48), (128, 128, 128), mode="L")
    (root / "train/n02121620/notes.txt").write_text("ignored")
    _png(root / "val/n02121620/x.png", (30, 30), (0, 0, 255))


def test_folder_tree_with_wnids_and_val(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "words.txt").write_text("n02084071\tdog, domestic dog\nn09999999\tunused\n")
    ds = load_dataset(f"folder:{tmp_path}", image_size=16)
    assert ds.name == "folder" and ds.spec == f"folder:{tmp_path.resolve()}"
    assert [(c.label, c.name, c.wnid) for c in ds.classes] == [
        (0, "dog", "n02084071"),
        (1, "n02121620", "n02121620"),
    ]
    assert ds.train.lazy and len(ds.train) == 5
    np.testing.assert_array_equal(ds.train.labels, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds.train.sample_ids, np.arange(5))
    assert ds.test is not None and len(ds.test) == 1 and ds.test.labels.tolist() == [1]

    batch = ds.train.get_batch(np.array([0, 1, 4, 3]))
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 16, 16) and batch.is_contiguous()
    assert batch[0, :, 8, 8].tolist() == [200, 10, 10]  # solid colours survive resize + crop
    assert batch[2, :, 8, 8].tolist() == [128, 128, 128]  # grayscale -> 3 channels
    assert abs(batch[3, 2].float().mean().item() - 200) < 3  # JPEG, so approximately
    assert ds.test.get_batch(np.array([0]))[0, :, 0, 0].tolist() == [0, 0, 255]
    assert all(0 < m < 1 for m in ds.mean) and all(s > 0 for s in ds.std)


def test_folder_default_size_and_flat_layout(tmp_path: Path) -> None:
    _png(tmp_path / "cats/a.png", (100, 80), (1, 2, 3))
    _png(tmp_path / "dogs/a.png", (70, 90), (4, 5, 6))
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.test is None
    assert [c.name for c in ds.classes] == ["cats", "dogs"]
    assert all(c.wnid is None for c in ds.classes)
    assert ds.train.get_batch(np.array([1, 0])).shape == (2, 3, 64, 64)


def test_folder_subset_keeps_files_and_ids(tmp_path: Path) -> None:
    _tree(tmp_path)
    ds = load_dataset(f"folder:{tmp_path}", image_size=8, subset=3, seed=1)
    full = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert len(ds.train) == 3
    assert torch.equal(_all(ds.train), full.train.get_batch(ds.train.sample_ids))


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "train/empty").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"has no \.jpg"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_val_class_must_exist_in_train(tmp_path: Path) -> None:
    _png(tmp_path / "train/a/1.png", (8, 8), (0, 0, 0))
    _png(tmp_path / "val/images/1.png", (8, 8), (0, 0, 0))
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"folder:{tmp_path}")
    assert "not a train class folder" in _one_line(exc)


def test_folder_corrupt_image_fails_at_decode(tmp_path: Path) -> None:
    _png(tmp_path / "a/good.png", (8, 8), (0, 0, 0))
    (tmp_path / "a/bad.png").write_bytes(b"definitely not a png")
    # Loading decodes up to 1,000 images for the channel statistics, so the error surfaces here.
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"folder:{tmp_path}", image_size=8)
    assert "bad.png" in _one_line(exc)
    split = ImageSplit(
        labels=np.zeros(2, dtype=np.int64),
        sample_ids=np.arange(2, dtype=np.int64),
        image_size=8,
        files=(str(tmp_path / "a/good.png"), str(tmp_path / "a/bad.png")),
    )
    assert split.get_batch(np.array([0])).shape == (1, 3, 8, 8)
    with pytest.raises(DatasetError, match="cannot decode"):
        split.get_batch(np.array([0, 1]))


def test_folder_with_cifar_names_uses_cifar_table(tmp_path: Path) -> None:
    for c in CIFAR10_CLASSES:
        _png(tmp_path / f"train/{c.name}/0000.png", (32, 32), (c.label * 20, 0, 0))
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.classes is CIFAR10_CLASSES


# ---------------------------------------------------------------------------------------------
# subset
# ---------------------------------------------------------------------------------------------


def test_subset_keeps_original_sample_ids_and_is_seeded() -> None:
    full = load_dataset("synthetic:200", seed=3)
    sub = load_dataset("synthetic:200", seed=3, subset=50)
    assert len(sub.train) == 50
    ids = sub.train.sample_ids
    assert len(np.unique(ids)) == 50 and np.all(np.diff(ids) > 0) and ids.max() < 200
    assert torch.equal(_all(sub.train), full.train.get_batch(ids))
    np.testing.assert_array_equal(sub.train.labels, full.train.labels[ids])
    # test split untouched
    assert sub.test is not None and full.test is not None and len(sub.test) == len(full.test)

    again = load_dataset("synthetic:200", seed=3, subset=50)
    np.testing.assert_array_equal(again.train.sample_ids, ids)
    other = load_dataset("synthetic:200", seed=4, subset=50)
    assert not np.array_equal(other.train.sample_ids, ids)
    smaller = load_dataset("synthetic:200", seed=3, subset=20)
    assert set(smaller.train.sample_ids) <= set(ids)  # nested across sizes


def test_subset_larger_than_train_split() -> None:
    with pytest.raises(DatasetError) as exc:
        load_dataset("synthetic:20", subset=21)
    assert "--subset" in _one_line(exc)


# ---------------------------------------------------------------------------------------------
# torchvision CIFAR
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_without_files_asks_for_download(tmp_path: Path, kind: str) -> None:
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"{kind}:{tmp_path}", download=False)
    message = _one_line(exc)
    assert "--download" in message and "npz:DIR" in message


# ---------------------------------------------------------------------------------------------
# Real data (the shared CIFAR-10 copy)
# ---------------------------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason=f"{SHARED_CIFAR10} not present")
def test_shared_cifar10_npz() -> None:
    ds = load_dataset(f"npz:{SHARED_CIFAR10}")
    assert ds.test is not None
    assert (len(ds.train), len(ds.test)) == (50_000, 10_000)
    assert ds.classes is CIFAR10_CLASSES
    assert [c.synset for c in ds.classes][:3] == ["airplane.n.01", "car.n.01", "bird.n.01"]
    assert ds.train.images is not None and ds.train.images.is_contiguous()
    assert ds.train.get_batch(np.arange(0, 50_000, 997)).shape == (51, 3, 32, 32)
    np.testing.assert_array_equal(np.bincount(ds.train.labels), [5000] * 10)
    np.testing.assert_allclose(ds.mean, CIFAR10_MEAN, atol=3e-3)


class _FakeCifar:
    """Stands in for torchvision's CIFAR classes: data HWC uint8, targets list, classes."""

    names: tuple[str, ...] = tuple(c.name for c in CIFAR10_CLASSES)

    def __init__(self, root: str, train: bool, download: bool) -> None:
        n = 20 if train else 10
        rng = np.random.default_rng(int(train))
        self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % len(self.names) for i in range(n)]
        self.classes = list(self.names)


def test_cifar_conversion_and_constants(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torchvision

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCifar)
    ds = load_dataset(f"cifar10:{tmp_path}", subset=8)
    assert ds.name == "cifar10" and ds.spec == f"cifar10:{tmp_path.resolve()}"
    assert ds.classes is CIFAR10_CLASSES and ds.mean == CIFAR10_MEAN
    assert ds.test is not None and (len(ds.train), len(ds.test)) == (8, 10)
    raw = _FakeCifar("", train=True, download=False)
    ids = ds.train.sample_ids
    np.testing.assert_array_equal(_all(ds.train).numpy(), raw.data[ids].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.train.labels, np.asarray(raw.targets)[ids])


def test_cifar_download_failure_is_a_dataset_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import urllib.error

    import torchvision

    def offline(root: str, train: bool, download: bool) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure\nin name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"cifar100:{tmp_path}", download=True)
    message = _one_line(exc)
    assert "downloading cifar100" in message and "npz:DIR" in message


def test_demo_sample_ships_with_the_package() -> None:
    ds = load_dataset("demo")
    assert ds.spec == "demo" and ds.name == "demo"
    assert ds.test is not None and (len(ds.train), len(ds.test)) == (2000, 500)
    np.testing.assert_array_equal(np.bincount(ds.train.labels), [200] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test.labels), [50] * 10)
    assert ds.classes is CIFAR10_CLASSES
    assert ds.train.get_batch(np.arange(4)).shape == (4, 3, 32, 32)
    with pytest.raises(DatasetError, match="no argument"):
        load_dataset("demo:x")
