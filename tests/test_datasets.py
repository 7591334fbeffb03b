"""Seed 003's data sets (CIFAR-100 binary, Tiny ImageNet), ImageNet-style val/ folders and the
held-out validation split, on small synthetic copies of each layout; wrong layouts are clear
errors (exit code 2 from the CLI)."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from archc.training.data import load_images
from archc.compiler import ArchError

PIL = pytest.importorskip("PIL.Image")


def _cifar100_records(n, seed):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 20, n).astype(np.uint8)
    fine = rng.integers(0, 100, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    blob = np.concatenate([coarse[:, None], fine[:, None], pixels.reshape(n, -1)], 1).tobytes()
    return blob, coarse, fine, pixels.transpose(0, 2, 3, 1)


def write_cifar100(folder, n_train=30, n_test=10, names=True):
    os.makedirs(folder, exist_ok=True)
    out = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        blob, coarse, fine, images = _cifar100_records(n, seed)
        with open(os.path.join(folder, f"{split}.bin"), "wb") as f:
            f.write(blob)
        out[split] = (coarse, fine, images)
    if names:
        with open(os.path.join(folder, "fine_label_names.txt"), "w") as f:
            f.write("".join(f"fine{i}\n" for i in range(100)))
        with open(os.path.join(folder, "coarse_label_names.txt"), "w") as f:
            f.write("".join(f"coarse{i}\n" for i in range(20)))
    return out


def test_cifar100_binary_folder_and_tar(tmp_path):
    want = write_cifar100(str(tmp_path / "cifar-100-binary"))
    d = load_images(str(tmp_path), cache=False)  # finds cifar-100-binary/ inside
    np.testing.assert_array_equal(d.train_x, want["train"][2])
    np.testing.assert_array_equal(d.train_y, want["train"][1])
    np.testing.assert_array_equal(d.test_y, want["test"][1])
    assert d.classes[:2] == ("fine0", "fine1") and len(d.classes) == 100
    c = load_images(str(tmp_path), cache=False, coarse=True)
    np.testing.assert_array_equal(c.train_y, want["train"][0])
    assert len(c.classes) == 20 and c.classes[0] == "coarse0"
    tar = tmp_path / "cifar-100-binary.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(tmp_path / "cifar-100-binary", arcname="cifar-100-binary")
    t = load_images(str(tar), cache=False)
    np.testing.assert_array_equal(t.test_x, want["test"][2])
    np.testing.assert_array_equal(t.train_y, d.train_y)


def test_cifar100_without_name_files_numbers_its_classes(tmp_path):
    write_cifar100(str(tmp_path), names=False)
    assert load_images(str(tmp_path), cache=False).classes[:3] == ("0", "1", "2")


def test_cifar100_bad_layouts(tmp_path):
    write_cifar100(str(tmp_path))
    with open(tmp_path / "test.bin", "ab") as f:
        f.write(b"x")  # not a whole record
    with pytest.raises(ArchError, match="not a whole number of CIFAR-100 records"):
        load_images(str(tmp_path), cache=False)
    (tmp_path / "test.bin").unlink()
    with pytest.raises(ArchError, match=r"incomplete: missing \['test.bin'\]"):
        load_images(str(tmp_path), cache=False)
    # a CIFAR-10 batch (3073-byte records) renamed train.bin: the hint says which it is
    other = tmp_path / "c10"
    other.mkdir()
    (other / "train.bin").write_bytes(bytes(3073 * 2))
    (other / "test.bin").write_bytes(bytes(3073 * 2))
    with pytest.raises(ArchError) as err:
        load_images(str(other), cache=False)
    assert "CIFAR-10's" in err.value.format()
    # fine label 100 is out of range
    bad = tmp_path / "bad"
    bad.mkdir()
    rec = bytearray(3074)
    rec[1] = 100
    (bad / "train.bin").write_bytes(bytes(rec))
    (bad / "test.bin").write_bytes(bytes(3074))
    with pytest.raises(ArchError, match="outside CIFAR-100's range"):
        load_images(str(bad), cache=False)


def test_coarse_labels_of_another_data_set_is_an_error(tmp_path):
    _image_folder(tmp_path, "test")
    with pytest.raises(ArchError, match="not CIFAR-100"):
        load_images(str(tmp_path), cache=False, coarse=True)


def _png(path, value, size=(8, 8)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = np.full((*size, 3), value, np.uint8)
    PIL.fromarray(arr).save(path, format="PNG" if path.endswith(".png") else "JPEG")


def write_tiny_imagenet(root, wnids=("n02", "n01", "n03"), per_class=2, val=(("n01", 2),
                                                                               ("n03", 1))):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "wnids.txt"), "w") as f:
        f.write("\n".join(wnids) + "\n")
    for i, w in enumerate(sorted(wnids)):
        for j in range(per_class):
            _png(os.path.join(root, "train", w, "images", f"{w}_{j}.png"), 10 * i + j)
        with open(os.path.join(root, "train", w, f"{w}_boxes.txt"), "w") as f:
            f.write("")
    lines, k = [], 0
    for w, n in val:
        for _ in range(n):
            _png(os.path.join(root, "val", "images", f"val_{k}.png"), 100 + k)
            lines.append(f"val_{k}.png\t{w}\t0\t0\t7\t7")
            k += 1
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.makedirs(os.path.join(root, "test", "images"), exist_ok=True)  # unlabelled: not read


def test_tiny_imagenet_layout(tmp_path):
    root = str(tmp_path / "tiny-imagenet-200")
    write_tiny_imagenet(root)
    d = load_images(root, cache=False)
    assert d.classes == ("n01", "n02", "n03")
    assert d.train_x.shape == (6, 8, 8, 3) and list(d.train_y) == [0, 0, 1, 1, 2, 2]
    assert list(d.test_y) == [0, 0, 2]
    assert [int(v) for v in d.test_x[:, 0, 0, 0]] == [100, 101, 102]
    assert [int(v) for v in d.train_x[:, 0, 0, 0]] == [0, 1, 10, 11, 20, 21]


@pytest.mark.parametrize("damage, message", [
    ("no_annotations", "val/val_annotations.txt is missing"),
    ("unlabelled", "has no line in val/val_annotations.txt"),
    ("unknown_wnid", "which is not a train/ class"),
    ("bad_line", "expected 'file<TAB>wnid<TAB>box'"),
    ("wnids", "do not match wnids.txt"),
    ("no_images", "train/n01/images/ is missing"),
])
def test_tiny_imagenet_bad_layouts(tmp_path, damage, message):
    root = str(tmp_path / "t")
    write_tiny_imagenet(root)
    ann = os.path.join(root, "val", "val_annotations.txt")
    if damage == "no_annotations":
        os.remove(ann)
    elif damage == "unlabelled":
        _png(os.path.join(root, "val", "images", "extra.png"), 1)
    elif damage == "unknown_wnid":
        with open(ann, "a") as f:
            f.write("val_9.png\tn99\t0\t0\t1\t1\n")
        _png(os.path.join(root, "val", "images", "val_9.png"), 1)
    elif damage == "bad_line":
        with open(ann, "a") as f:
            f.write("just-a-name\n")
    elif damage == "wnids":
        with open(os.path.join(root, "wnids.txt"), "a") as f:
            f.write("n04\n")
    elif damage == "no_images":
        import shutil
        shutil.rmtree(os.path.join(root, "train", "n01", "images"))
    with pytest.raises(ArchError, match=message):
        load_images(root, cache=False)


def _image_folder(root, test_name):
    for split in ("train", test_name):
        for c in ("a", "b"):
            for j in range(3):
                _png(os.path.join(str(root), split, c, f"{j}.png"), 50 * (c == "b") + j)


def test_imagenet_style_val_folder(tmp_path):
    _image_folder(tmp_path, "val")
    d = load_images(str(tmp_path), cache=False)
    assert d.classes == ("a", "b") and len(d.test_y) == 6 and list(d.test_y) == [0] * 3 + [1] * 3


def test_held_out_validation_split(tmp_path):
    write_cifar100(str(tmp_path), n_train=50, n_test=10)
    d = load_images(str(tmp_path), cache=False)
    h = d.holdout(8, seed=3)
    assert (len(h.train_y), len(h.test_y)) == (42, 8)
    # a partition of the training images: every one is in exactly one of the two splits
    rows = {x.tobytes() for x in d.train_x}
    assert {x.tobytes() for x in h.train_x} | {x.tobytes() for x in h.test_x} == rows
    assert not {x.tobytes() for x in h.train_x} & {x.tobytes() for x in h.test_x}
    np.testing.assert_array_equal(d.holdout(8, seed=3).test_x, h.test_x)  # seeded
    assert not np.array_equal(d.holdout(8, seed=4).test_x, h.test_x)
    for bad in (0, 50):
        with pytest.raises(ArchError, match="--val-split"):
            d.holdout(bad)


def test_cli_layout_errors_exit_2(tmp_path):
    root = tmp_path / "t"
    write_tiny_imagenet(str(root))
    os.remove(root / "val" / "val_annotations.txt")
    proc = subprocess.run([sys.executable, "-m", "archc", "train", "sqnxt", "--data", str(root),
                           "--out", str(tmp_path / "run"), "--epochs", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "val_annotations.txt is missing" in proc.stderr
    assert not (tmp_path / "run").exists()
