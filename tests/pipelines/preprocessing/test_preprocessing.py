"""preprocessing: the uint8 training tensor, its deterministic split and the dataset's data_hash."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import PROJECT_ROOT, run_kedro
from image_cases import RESOLUTION, encode, gradient, write_image_cases
from PIL import Image

from atelier.core import images as core_images
from atelier.core.storage import dataset_hash
from atelier.errors import DataSourceError
from atelier.pipelines.data_ingestion.nodes import build_manifest, inspect_source, record_lineage
from atelier.pipelines.preprocessing.nodes import preprocess_images

PRIMARY = "data/03_primary/images.pt"


# conf/base's ingestion limits (archive caps included); each test sets source/extract_dir.
INGESTION = {key: value for key, value in yaml.safe_load(
    (PROJECT_ROOT / "conf/base/parameters_data_ingestion.yml").read_text())["ingestion"].items()
    if key not in ("source", "extract_dir")}


@pytest.mark.slow
def test_digits_at_32_and_split_is_stable_when_images_are_added(
        kedro_project, sample_images_dir, shared_tracking_env, tmp_path):
    images = kedro_project / "data" / "01_raw" / "images"
    shutil.copytree(sample_images_dir, images)
    run_kedro(kedro_project, "run", "--pipeline=data_ingestion", env=shared_tracking_env)
    run_kedro(kedro_project, "run", "--pipeline=preprocessing",
              "--params=preprocessing.resolution=32", env=shared_tracking_env)

    first = torch.load(kedro_project / PRIMARY, weights_only=True)
    assert first["images"].shape == (1797, 1, 32, 32) and first["images"].dtype == torch.uint8
    assert (first["resolution"], first["channels"]) == (32, 1)
    assert first["paths"] == sorted(first["paths"]) and first["paths"][0] == "0/0000.png"
    assert first["is_val"].dtype == torch.bool and 0.15 < first["is_val"].float().mean() < 0.25
    manifest = pd.read_parquet(kedro_project / "data/02_intermediate/manifest.parquet")
    used = manifest[manifest["status"] == "ok"]
    assert first["data_hash"] == dataset_hash(used["path"].tolist(), used["sha256"].tolist())
    # The pixels are the digit: 0000.png is a zero, dark in the middle, inked around it.
    zero = first["images"][0, 0].float()
    assert zero[12:20, 12:20].mean() < 60 and zero[4:28, 4:28].max() > 200
    # Each digit's class is its folder: class_names "0".."9", labels index them.
    assert first["class_names"] == list("0123456789")
    assert first["class_indices"].dtype == torch.int64 and first["class_indices"].shape == (1797,)
    names = [first["class_names"][i] for i in first["class_indices"]]
    assert names == [p[0] for p in first["paths"]]

    # Add 200 new images (mirrored digits: new content) between the old ones in path
    # order, and ingest + preprocess again (in-process: same nodes, faster than kedro).
    grown = tmp_path / "grown"
    shutil.copytree(images, grown)
    for path in sorted(grown.rglob("*.png"))[::9]:
        with Image.open(path) as digit:
            digit.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path.with_stem(path.stem + "_m"))
    ingestion = {**INGESTION, "source": str(grown), "extract_dir": str(tmp_path / "x")}
    manifest = build_manifest(inspect_source(ingestion))
    second = preprocess_images(manifest, lineage_of(manifest, ingestion),
                               preprocessing_params(resolution=32, workers=None))

    assert len(second["paths"]) == 1797 + 200
    assert second["data_hash"] != first["data_hash"]
    row = {path: i for i, path in enumerate(second["paths"])}
    old = torch.tensor([row[path] for path in first["paths"]])
    assert torch.equal(second["is_val"][old], first["is_val"])  # no old image moved
    assert torch.equal(second["images"][old], first["images"])  # nor changed its pixels
    assert [second["sha256"][i] for i in old] == first["sha256"]


@pytest.fixture
def cases(tmp_path):
    """Every image case ingested in-process: (manifest, params:ingestion)."""
    write_image_cases(tmp_path / "in")
    ingestion = {**INGESTION, "source": str(tmp_path / "in"),
                 "extract_dir": str(tmp_path / "extracted")}
    return build_manifest(inspect_source(ingestion)), ingestion


def lineage_of(manifest: pd.DataFrame, ingestion: dict) -> dict:
    """The lineage ingestion's record_lineage node writes for ``manifest``."""
    return record_lineage(manifest, {"git_commit": None, "git_dirty": False, "dvc_versions": {}},
                          ingestion)


def preprocessing_params(**overrides) -> dict:
    return {"resolution": RESOLUTION, "channels": 1, "val_fraction": 0.2, "workers": 1,
            **overrides}


@pytest.mark.parametrize("channels", [1, 3])
def test_only_ok_rows_in_path_order_with_the_requested_channels(cases, channels):
    manifest, ingestion = cases
    result = preprocess_images(manifest, lineage_of(manifest, ingestion),
                               preprocessing_params(channels=channels))
    ok = manifest[manifest["status"] == "ok"]
    used = ok[ok["path"] != "bad/tiny.png"]  # 16 x 24: below the resolution, skipped
    assert result["paths"] == sorted(used["path"]) and len(result["paths"]) == 14
    assert result["images"].shape == (14, channels, RESOLUTION, RESOLUTION)
    assert result["images"].dtype == torch.uint8
    assert result["sha256"] == used.set_index("path").loc[result["paths"], "sha256"].tolist()
    assert torch.equal(result["is_val"], core_images.assign_validation(result["sha256"], 0.2))
    assert result["skipped"] == [{"path": "bad/tiny.png", "width": 16, "height": 24, "reason":
                                  f"too_small: shorter side below preprocessing.resolution {RESOLUTION}"}]
    assert result["data_hash"] == dataset_hash(result["paths"], result["sha256"])
    rgba = result["images"][result["paths"].index("modes/rgba.png")]
    assert torch.all(rgba == 255)  # transparent -> white
    # Classes of the images used only, sorted (zz_copies/ holds only a rejected duplicate,
    # bad/ only rejected files and the skipped tiny.png).
    assert result["class_names"] == ["anim", "dup", "exif", "modes"]
    assert result["class_indices"].dtype == torch.int64
    assert [result["class_names"][i] for i in result["class_indices"]] == [
        path.split("/")[0] for path in result["paths"]]


def test_small_images_are_skipped_with_a_record_or_upscaled_and_the_data_hash_follows(cases, caplog):
    manifest, ingestion = cases
    lineage = lineage_of(manifest, ingestion)
    with caplog.at_level("WARNING"):
        strict = preprocess_images(manifest, lineage, preprocessing_params())
    assert "Skipped 1 of 15 images smaller than 32 pixels" in caplog.text
    assert "bad/tiny.png (16x24)" in caplog.text
    upscaled = preprocess_images(manifest, lineage, preprocessing_params(allow_upscale=True))
    assert upscaled["skipped"] == [] and "bad/tiny.png" in upscaled["paths"]
    assert upscaled["data_hash"] == lineage["data_hash"]  # every usable image is used
    # Another set of images, another identity: a checkpoint of one is never resumed on the other.
    assert strict["data_hash"] != lineage["data_hash"]
    assert upscaled["class_names"] == ["anim", "bad", "dup", "exif", "modes"]


def test_a_resolution_above_every_image_is_refused_naming_the_fix(cases):
    manifest, ingestion = cases
    with pytest.raises(DataSourceError, match="All 15 usable images are smaller than 256 pixels"
                                              ".*preprocessing.allow_upscale"):
        preprocess_images(manifest, lineage_of(manifest, ingestion), preprocessing_params(resolution=256))
    result = preprocess_images(manifest, lineage_of(manifest, ingestion),
                               preprocessing_params(resolution=64, allow_upscale=True))
    assert result["images"].shape[-2:] == (64, 64)


def test_a_lineage_without_the_image_root_asks_for_a_new_ingestion(cases):
    manifest, ingestion = cases
    old = {key: value for key, value in lineage_of(manifest, ingestion).items() if key != "image_root"}
    with pytest.raises(DataSourceError, match="image_root.*pipeline=data_ingestion"):
        preprocess_images(manifest, old, preprocessing_params())


def test_images_outside_class_folders_get_the_empty_class(tmp_path):
    folder = tmp_path / "in"
    for index, relative in enumerate(["b/1.png", "a/2.png", "3.png", "b/c/4.png"]):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 40), index * 60, np.uint8)).save(folder / relative)
    ingestion = {**INGESTION, "source": str(folder), "extract_dir": str(tmp_path / "x")}
    manifest = build_manifest(inspect_source(ingestion))
    result = preprocess_images(manifest, lineage_of(manifest, ingestion), preprocessing_params())
    assert result["paths"] == ["3.png", "a/2.png", "b/1.png", "b/c/4.png"]
    assert result["class_names"] == ["", "a", "b"]
    assert result["class_indices"].tolist() == [0, 1, 2, 2]


def test_manifest_without_labels_asks_for_a_new_ingestion(cases):
    manifest, ingestion = cases
    old = manifest.drop(columns="label")
    with pytest.raises(DataSourceError, match="no 'label' column.*pipeline=data_ingestion"):
        preprocess_images(old, lineage_of(old, ingestion), preprocessing_params())


def test_files_changed_since_ingestion_are_refused(cases, tmp_path):
    manifest, ingestion = cases
    (tmp_path / "in" / "modes" / "gray.png").write_bytes(encode(gradient(40, 40)))
    with pytest.raises(DataSourceError, match="1 files changed since ingestion.*modes/gray.png"):
        preprocess_images(manifest, lineage_of(manifest, ingestion), preprocessing_params())


def test_manifest_without_usable_images_is_refused(cases):
    manifest, ingestion = cases
    rejected = manifest[manifest["status"] != "ok"]
    with pytest.raises(DataSourceError, match="None of the 9 files .* rejection report"):
        preprocess_images(rejected, lineage_of(rejected, ingestion), preprocessing_params())


def test_archive_source_is_read_from_the_extraction_folder(tmp_path):
    folder = tmp_path / "folder"
    for index in range(3):
        (folder / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 40), index * 100, np.uint8)).save(folder / "a" / f"{index}.png")
    archive = shutil.make_archive(str(tmp_path / "upload"), "zip", folder)
    ingestion = {**INGESTION, "source": archive, "extract_dir": str(tmp_path / "extracted")}
    manifest = build_manifest(inspect_source(ingestion))
    result = preprocess_images(manifest, lineage_of(manifest, ingestion), preprocessing_params())
    assert result["paths"] == ["a/0.png", "a/1.png", "a/2.png"]
    assert result["images"].flatten(1).float().mean(1).tolist() == [0.0, 100.0, 200.0]
