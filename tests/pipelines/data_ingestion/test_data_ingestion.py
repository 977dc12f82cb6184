"""data_ingestion: one manifest row per file with the right status, safe archives, clear errors."""

from __future__ import annotations

import shutil
import zipfile

import pandas as pd
import pytest
import yaml
from conftest import PROJECT_ROOT, make_project_copy, run_kedro
from image_cases import RESOLUTION, encode, gradient, write_image_cases

from atelier.errors import DataSourceError
from atelier.hooks import LOCK_FILE
from atelier.pipelines.data_ingestion.nodes import (
    MANIFEST_COLUMNS,
    build_manifest,
    inspect_source,
    record_lineage,
    report_rejections,
)

EXTRACT_DIR = "data/02_intermediate/extracted"
MANIFEST = "data/02_intermediate/manifest.parquet"
# The archive caps as shipped, read rather than copied so they cannot drift.
ARCHIVE_CAPS = {key: value for key, value in yaml.safe_load(
    (PROJECT_ROOT / "conf/base/parameters_data_ingestion.yml").read_text())["ingestion"].items()
    if key.startswith("max_archive_")}


def snapshot(folder):
    """Every path under ``folder`` with its mtime, aside from what every run writes whatever
    it does: MLflow's artifact store, the run lock (src/atelier/hooks/runlock.py) and kedro-viz's
    record of the last run (``.viz/``, when the viz extra is installed)."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")
            if not {"mlruns", ".viz"} & set(p.parts) and p.name != LOCK_FILE}


def ingestion_params(source, tmp_path, **overrides) -> dict:
    params = {"source": str(source), "extract_dir": str(tmp_path / "extracted"),
              "max_image_pixels": 89_478_485, "max_file_bytes": 104_857_600,
              "workers": 1, **ARCHIVE_CAPS}
    return {**params, **overrides}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, sample_images_dir, shared_tracking_env):
    """A project whose source holds the digits plus every image case, after one real
    ``kedro run --pipeline=data_ingestion``: (project, {path: expected status})."""
    project = make_project_copy(tmp_path_factory.mktemp("ingestion") / "project")
    images = project / "data" / "01_raw" / "images"
    shutil.copytree(sample_images_dir, images)
    expected = {p.relative_to(images).as_posix(): "ok" for p in images.rglob("*.png")}
    expected.update(as_ingested(write_image_cases(images, duplicate_of=images / "3" / "0003.png")))
    run_kedro(project, "run", "--pipeline=data_ingestion", env=shared_tracking_env)
    return project, expected


@pytest.mark.slow
def test_digits_plus_every_bad_kind_gives_one_row_per_file(ingested):
    project, expected = ingested
    files = [p for p in (project / "data/01_raw/images").rglob("*") if p.is_file()]
    manifest = pd.read_parquet(project / MANIFEST)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == len(files) == 1797 + 23
    assert manifest["path"].tolist() == sorted(expected)  # relative, POSIX, in path order
    assert dict(zip(manifest["path"], manifest["status"], strict=True)) == expected
    rows = manifest.set_index("path")
    assert rows.loc["modes/gray16.png", "mode"] == "I;16"
    assert (rows.loc["exif/rotated.jpg", "width"], rows.loc["exif/rotated.jpg", "height"]) == (64, 48)
    assert (rows.loc["0/0000.png", "width"], rows.loc["0/0000.png", "mode"]) == (64, "L")
    digits = manifest[manifest["path"].str.match(r"\d/")]
    assert (digits["label"] == digits["path"].str[0]).all()  # the class folder, "0" to "9"
    assert sorted(set(digits["label"])) == list("0123456789")
    assert rows.loc["exif/rotated.jpg", "label"] == "exif"

    report = (project / "data/08_reporting/rejected_files.md").read_text()
    for path, status in expected.items():
        if status != "ok":
            assert f"| {path} | {status} |" in report
    assert "| too_large | 1 |" in report and "| duplicate | 1 |" in report
    assert "same bytes as 3/0003.png" in report


@pytest.mark.slow
def test_zip_with_parent_path_fails_clearly_and_writes_nothing(ingested, shared_tracking_env):
    project, _ = ingested
    upload = project / "data" / "01_raw" / "upload.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        archive.writestr("good/one.png", encode(gradient(40, 40)))
        archive.writestr(zipfile.ZipInfo("../evil.png"), b"payload")
    before = snapshot(project.parent)

    result = run_kedro(project, "run", "--pipeline=data_ingestion",
                       "--params=ingestion.source=data/01_raw/upload.zip",
                       env=shared_tracking_env, check=False)

    assert result.returncode != 0
    assert "UnsafeArchiveError" in result.stderr
    assert "Refusing to extract data/01_raw/upload.zip" in result.stderr
    assert "'../evil.png' contains '..'" in result.stderr
    assert not (project / EXTRACT_DIR).exists()
    # Nothing new and nothing rewritten anywhere (the earlier manifest is untouched too).
    assert snapshot(project.parent) == before
    upload.unlink()


def test_archive_source_is_extracted_and_paths_are_relative_to_it(tmp_path):
    upload = tmp_path / "upload.tar.gz"
    folder = tmp_path / "folder"
    write_image_cases(folder)
    shutil.make_archive(str(tmp_path / "upload"), "gztar", folder)
    from_folder = inspect_source(ingestion_params(folder, tmp_path))
    from_archive = inspect_source(ingestion_params(upload, tmp_path))
    pd.testing.assert_frame_equal(from_archive, from_folder)
    assert (tmp_path / "extracted" / "exif" / "rotated.jpg").is_file()


def as_ingested(expected: dict[str, str]) -> dict[str, str]:
    """The statuses ingestion gives the image cases: sizes are recorded, not judged, so an
    image that is too small for some resolution is ``ok`` here (preprocessing decides)."""
    return {path: "ok" if status == "too_small" else status for path, status in expected.items()}


def test_ingestion_records_sizes_and_leaves_the_size_rule_to_preprocessing(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "small.png").write_bytes(encode(gradient(16, 20)))
    inspected = inspect_source(ingestion_params(tmp_path / "in", tmp_path))
    assert inspected[["status", "width", "height"]].values.tolist() == [["ok", 16, 20]]


def test_lineage_says_where_the_images_are_for_a_folder_and_an_archive(tmp_path):
    version = {"git_commit": None, "git_dirty": False, "dvc_versions": {}}
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(gradient(40, 40)))
    upload = shutil.make_archive(str(tmp_path / "upload"), "zip", folder)
    for source, root in ((folder, folder), (upload, tmp_path / "extracted")):
        params = ingestion_params(source, tmp_path)
        lineage = record_lineage(build_manifest(inspect_source(params)), version, params)
        assert lineage["image_root"] == str(root) and lineage["data_source"] == str(source)


@pytest.mark.parametrize("setup", ["missing", "empty", "no_images", "file"])
def test_missing_or_empty_source_says_how_to_fix_it(tmp_path, setup):
    source = tmp_path / "images"
    if setup == "empty":
        source.mkdir()
    elif setup == "no_images":
        (source / "sub").mkdir(parents=True)
        (source / "sub" / "README.txt").write_text("not a picture")
    elif setup == "file":
        source.write_text("a plain file")
    with pytest.raises(DataSourceError) as error:
        inspect_source(ingestion_params(source, tmp_path))
    message = str(error.value)
    assert str(source) in message
    assert "Run 'kedro run --pipeline=sample_data' for the bundled sample, or set " \
           "ingestion.source in conf/base/parameters_data_ingestion.yml." in message
    if setup in ("empty", "no_images"):
        assert message.startswith(f"No images found under {source}")


def test_manifest_and_report_nodes(tmp_path):
    expected = as_ingested(write_image_cases(tmp_path / "in"))
    inspected = inspect_source(ingestion_params(tmp_path / "in", tmp_path))
    manifest = build_manifest(inspected)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert dict(zip(manifest["path"], manifest["status"], strict=True)) == expected
    assert manifest["width"].dtype == "Int64" and manifest.loc[0, "sha256"]
    assert dict(zip(manifest["path"], manifest["label"], strict=True)) == {
        path: path.split("/")[0] for path in expected}
    report = report_rejections(inspected, "data/01_raw/images")
    assert report.startswith("# Rejected files\n\nSource: `data/01_raw/images`. 24 files: 15 ok, 9 rejected.")
    assert "| corrupt | 3 |" in report
    assert "| bad/truncated_end.png | corrupt | does not decode: truncated PNG file (no IEND chunk) |" in report
    clean = report_rejections(inspected[inspected["status"] == "ok"], "x")
    assert clean.endswith("No file was rejected.\n")


def test_a_rejected_stray_file_leaves_the_data_hash_and_so_the_checkpoints_alone(tmp_path):
    source = tmp_path / "in"
    write_image_cases(source)
    version = {"git_commit": "c" * 40, "git_dirty": False, "dvc_versions": {}}

    def lineage():
        manifest = build_manifest(inspect_source(ingestion_params(source, tmp_path)))
        return manifest, record_lineage(manifest, version, ingestion_params(source, tmp_path))

    manifest, before = lineage()
    (source / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    after_manifest, after = lineage()
    assert after_manifest.loc[after_manifest["path"] == ".DS_Store", "status"].item() != "ok"
    assert after["data_hash"] == before["data_hash"]  # the images used are the same
    assert after["source_hash"] != before["source_hash"]  # the source is not
    assert after["data_version"] == f"content:{after['data_hash']}"
    # An added image that is used changes it (a byte-identical copy would be a duplicate).
    (source / "new.png").write_bytes(encode(gradient(RESOLUTION + 3, RESOLUTION + 5)))
    added_manifest, added = lineage()
    assert added_manifest.loc[added_manifest["path"] == "new.png", "status"].item() == "ok"
    assert added["data_hash"] != before["data_hash"]


def test_label_is_the_top_level_folder_or_empty_at_the_root(tmp_path):
    source = tmp_path / "in"
    files = ("cat/1.png", "cat/kittens/2.png", "dog/3.png", "loose.png", "dog/bad.png")
    for size, relative in enumerate(files, start=40):  # sizes differ: no duplicates
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(encode(gradient(size, size)) if "bad" not in relative
                                        else b"not an image")
    inspected = inspect_source(ingestion_params(source, tmp_path))
    manifest = build_manifest(inspected)
    assert list(manifest.columns) == MANIFEST_COLUMNS and MANIFEST_COLUMNS[-1] == "label"
    assert manifest[["path", "label", "status"]].values.tolist() == [
        ["cat/1.png", "cat", "ok"],
        ["cat/kittens/2.png", "cat", "ok"],  # the top-level folder, not the nearest one
        ["dog/3.png", "dog", "ok"],
        ["dog/bad.png", "dog", "not_an_image"],  # rejected files keep their class too
        ["loose.png", "", "ok"],  # directly in the root: no class
    ]
    assert inspected.set_index("path").loc["cat/kittens/2.png", "label"] == "cat"
