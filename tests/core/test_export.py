"""atelier.core.export: trained DCGANs (1 and 3 channels, conditional and not) to ONNX,
checked by ``onnx.checker``, run in ONNX Runtime at batch 1 and 7 against PyTorch; the seed
latents sidecar read without torch; batch-norm folding; the refusals and their messages."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import yaml
from conftest import PROJECT_ROOT
from torch import nn

import atelier
from atelier.core.errors import (
    CheckpointUnreadableError,
    ExportError,
    ExportTargetExistsError,
    GeneratorNotFoundError,
    GeneratorTooOldError,
)
from atelier.core.export import (
    DEFAULT_OPSET,
    check_against_pytorch,
    export_onnx,
    fold_batch_norm,
    load_exportable,
    seed_latents_path,
)
from atelier.core.generate import cycled_labels, generate_images, latent_vectors, to_uint8
from atelier.core.models import GeneratorCheckpoint, build_generator, load_generator
from atelier.core.storage import state_dict_sha256
from atelier.core.training import TrainingConfig, train_gan

LATENT_DIM = 8
CLASSES = ("cat", "dog", "owl")
CASES = [(1, False), (3, False), (1, True), (3, True)]  # (channels, conditional)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[tuple[int, bool], GeneratorCheckpoint]:
    """A DCGAN per case, trained for 6 steps by the real training loop (batch-norm statistics
    far from their initial 0 and 1, which is what folding has to get right)."""
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
    params = {**params["training"], "device": "cpu", "max_steps": 6, "batch_size": 8,
              "latent_dim": LATENT_DIM, "g_width": 4, "d_width": 4, "log_every": 2,
              "sample_every": 0, "checkpoint_every": 0, "resume": "never", "precision": "fp32",
              "eval_every": 0, "checkpoint_dir": str(tmp_path_factory.mktemp("checkpoints"))}
    checkpoints = {}
    for channels, conditional in CASES:
        images = torch.randint(0, 256, (24, channels, 32, 32), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(channels))
        result = train_gan(images, TrainingConfig.from_params({**params, "conditional": conditional}),
                           data_hash="export-test", labels=torch.arange(24) % 3 if conditional else None)
        checkpoints[channels, conditional] = dataclasses.replace(
            result.checkpoint, class_names=CLASSES if conditional else ())
    return checkpoints


def _session(path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _dims(value: onnx.ValueInfoProto) -> list:
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize(("channels", "conditional"), CASES)
def test_a_trained_dcgan_exports_checks_and_matches_pytorch(trained, tmp_path, channels, conditional):
    checkpoint = trained[channels, conditional]
    generator = load_generator(checkpoint)
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert any((norm.running_var - 1).abs().max() > 0.5 for norm in norms)  # trained statistics
    exported = export_onnx(checkpoint, tmp_path / "generator.onnx")

    model = onnx.load(tmp_path / "generator.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert {op.domain: op.version for op in model.opset_import} == {"": DEFAULT_OPSET}
    assert "BatchNormalization" not in {node.op_type for node in model.graph.node}
    inputs = {value.name: value for value in model.graph.input}
    assert list(inputs) == (["latent", "label"] if conditional else ["latent"])
    assert _dims(inputs["latent"]) == ["N", LATENT_DIM]
    assert inputs["latent"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    if conditional:
        assert _dims(inputs["label"]) == ["N"]
        assert inputs["label"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    [output] = model.graph.output
    assert output.name == "image" and _dims(output) == ["N", channels, 32, 32]

    session = _session(tmp_path / "generator.onnx")
    for batch in (1, 7):
        latents = latent_vectors(range(100, 100 + batch), LATENT_DIM)
        labels = torch.arange(batch) % 3 if conditional else None
        feed = {"latent": latents.numpy()} | ({"label": labels.numpy()} if conditional else {})
        got = torch.from_numpy(session.run(["image"], feed)[0])
        with torch.no_grad():
            expected = generator(latents, labels)
        assert got.shape == (batch, channels, 32, 32) and got.dtype == torch.float32
        assert (got - expected).abs().max() < 1e-5
        assert (to_uint8(got).int() - to_uint8(expected).int()).abs().max() <= 1
    assert exported.max_pixel_difference <= 1 and exported.max_float_difference < 1e-5
    assert exported.size_bytes == (tmp_path / "generator.onnx").stat().st_size


def test_the_file_carries_what_a_tool_needs_to_know(trained, tmp_path):
    checkpoint = trained[3, True]
    export_onnx(checkpoint, tmp_path / "generator.onnx", opset=17)
    model = onnx.load(tmp_path / "generator.onnx")
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert {key: metadata[key] for key in ("architecture", "resolution", "channels", "latent_dim",
                                           "num_classes", "opset", "training_step")} == {
        "architecture": "dcgan", "resolution": "32", "channels": "3", "latent_dim": "8",
        "num_classes": "3", "opset": "17", "training_step": "6"}
    assert json.loads(metadata["class_names"]) == list(CLASSES)
    assert metadata["generator_sha256"] == state_dict_sha256(checkpoint.state_dict)
    assert metadata["atelier_version"] == atelier.__version__
    assert "round((clip(image, -1, 1) + 1) * 127.5)" in metadata["output"]
    assert "before the call" in metadata["truncation"]
    assert {op.domain: op.version for op in model.opset_import} == {"": 17}


@pytest.mark.parametrize(("conditional", "truncation"), [(False, None), (True, 0.7)])
def test_seed_latents_outside_torch_give_the_gallerys_images(trained, tmp_path, conditional,
                                                             truncation):
    checkpoint, seeds = trained[3, conditional], [0, 1, 2, 5, 42, 63, 1000]
    exported = export_onnx(checkpoint, tmp_path / "g.onnx", seeds=seeds, truncation=truncation)
    assert exported.latents_path == seed_latents_path(tmp_path / "g.onnx") == tmp_path / "g.latents.json"

    # What a tool does: read the JSON, feed float32 latents (and the labels), map to uint8.
    sidecar = json.loads(exported.latents_path.read_text())
    assert sidecar["seeds"] == seeds and sidecar["truncation"] == truncation
    latents = np.asarray(sidecar["latents"], dtype=np.float32)
    assert np.array_equal(latents, latent_vectors(seeds, LATENT_DIM, truncation).numpy())  # exactly
    feed = {"latent": latents}
    if conditional:
        assert sidecar["class_names"] == list(CLASSES)
        feed["label"] = np.asarray(sidecar["labels"], dtype=np.int64)
    else:
        assert "labels" not in sidecar
    image = _session(exported.path).run(["image"], feed)[0]
    pixels = np.rint((np.clip(image, -1, 1) + 1) * 127.5).astype(np.uint8)

    generator = load_generator(checkpoint)
    gallery = generate_images(generator, seeds, truncation=truncation,
                              labels=cycled_labels(generator, seeds)).numpy()
    assert np.abs(pixels.astype(int) - gallery.astype(int)).max() <= 1
    assert (pixels == gallery).mean() > 0.999


def test_batch_norm_folding_keeps_the_function_and_leaves_the_original():
    torch.manual_seed(0)
    network = nn.Sequential(nn.ConvTranspose2d(4, 6, 4, 2, 1, bias=False), nn.BatchNorm2d(6),
                            nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1), nn.BatchNorm2d(3))
    network.train()
    with torch.no_grad():
        for _ in range(5):
            network(torch.randn(8, 4, 5, 5) * 3 + 1)
    network.eval()
    folded = fold_batch_norm(network)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in network.modules()) == 2
    x = torch.randn(3, 4, 5, 5)
    with torch.no_grad():
        assert torch.allclose(folded(x), network(x), atol=1e-5)


def test_a_graph_that_is_not_the_generator_fails_the_check(trained, tmp_path):
    checkpoint = trained[1, False]
    other = load_generator(dataclasses.replace(checkpoint, state_dict={
        key: value * 1.5 if value.is_floating_point() else value
        for key, value in checkpoint.state_dict.items()}))
    model = export_onnx(checkpoint, tmp_path / "g.onnx").path.read_bytes()
    latents = latent_vectors(range(4), LATENT_DIM)
    same = check_against_pytorch(model, load_generator(checkpoint), latents, None)
    differs = check_against_pytorch(model, other, latents, None)
    assert same[1] <= 1 and differs[1] > 10 and differs[0] > 0.05


def test_an_existing_output_is_refused_without_force(trained, tmp_path):
    checkpoint, target = trained[1, False], tmp_path / "generator.onnx"
    target.write_bytes(b"a studio's file")
    with pytest.raises(ExportTargetExistsError, match=r"exists already.*pass --force"):
        export_onnx(checkpoint, target)
    assert target.read_bytes() == b"a studio's file"
    (tmp_path / "fresh.latents.json").write_text("{}")  # the seed latents count too
    with pytest.raises(ExportTargetExistsError, match="fresh.latents.json exists already"):
        export_onnx(checkpoint, tmp_path / "fresh.onnx", seeds=[1])
    assert not (tmp_path / "fresh.onnx").exists()
    export_onnx(checkpoint, target, force=True)
    onnx.checker.check_model(onnx.load(target))


def _file(tmp_path, data, name="generator.pt"):
    path = tmp_path / name
    torch.save(data, path)
    return path


def test_a_generator_file_without_config_is_too_old(tmp_path):
    weights = build_generator({"resolution": 32, "channels": 1, "latent_dim": 8, "g_width": 4})
    path = _file(tmp_path, weights.state_dict())  # the weights alone, as files once were
    with pytest.raises(GeneratorTooOldError) as error:
        load_exportable(path)
    message = str(error.value)
    assert f"{path} is too old to export: it has no 'config' and no 'state_dict'" in message
    assert "kedro run --pipeline=train" in message and "GeneratorCheckpoint(config=" in message


@pytest.mark.parametrize(("change", "expected"), [
    ({"latent_dim": None}, r"lacks the key\(s\) \['latent_dim'\]"),
    ({"style_dim": 512}, r"has key\(s\) this Atelier does not know, \['style_dim'\]"),
])
def test_config_keys_the_export_does_not_know_or_lacks_are_named(tmp_path, change, expected):
    data = GeneratorCheckpoint.from_generator(build_generator(
        {"resolution": 32, "channels": 1, "latent_dim": 8, "g_width": 4})).to_dict()
    data["config"].update({key: value for key, value in change.items() if value is not None})
    for key in [key for key, value in change.items() if value is None]:
        del data["config"][key]
    with pytest.raises(GeneratorTooOldError, match=expected) as error:
        load_exportable(_file(tmp_path, data))
    assert "export it with that version, or retrain it" in str(error.value)


def test_newer_formats_and_weights_that_do_not_fit_are_refused(tmp_path):
    data = GeneratorCheckpoint.from_generator(build_generator(
        {"resolution": 32, "channels": 1, "latent_dim": 8, "g_width": 4})).to_dict()
    with pytest.raises(GeneratorTooOldError, match=r"newer Atelier \(generator format 99.*upgrade"):
        load_exportable(_file(tmp_path, {**data, "format": 99}))
    narrower = load_exportable(_file(tmp_path, {**data, "config": {**data["config"], "g_width": 2}}))
    with pytest.raises(GeneratorTooOldError, match="weights do not fit the architecture"):
        export_onnx(narrower, tmp_path / "g.onnx", where="generator.pt")
    assert not (tmp_path / "g.onnx").exists()


def test_missing_or_unreadable_files_and_unknown_opsets_say_what_to_do(trained, tmp_path):
    with pytest.raises(GeneratorNotFoundError, match=r"No generator file at .*nope\.pt"):
        load_exportable(tmp_path / "nope.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointUnreadableError, match="not a generator file PyTorch can read"):
        load_exportable(tmp_path / "notes.pt")
    with pytest.raises(ExportError, match="Opset 7 is not one this export writes: choose one of 11"):
        export_onnx(trained[1, False], tmp_path / "g.onnx", opset=7)


@pytest.mark.slow  # training then exporting FastGAN
@pytest.mark.parametrize("conditional", [False, True])
def test_a_trained_fastgan_exports_and_matches_pytorch(tmp_path, conditional):
    """FastGAN's graph (nearest up-sampling, GLU, skip-layer excitation; no noise in eval
    mode, so no random op) through ONNX Runtime gives the PyTorch generator's images."""
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
    params = {**params["training"], "device": "cpu", "max_steps": 3, "batch_size": 8,
              "latent_dim": LATENT_DIM, "g_width": 4, "d_width": 4, "log_every": 1,
              "sample_every": 0, "checkpoint_every": 0, "resume": "never", "precision": "fp32",
              "eval_every": 0, "checkpoint_dir": str(tmp_path / "checkpoints"),
              "architecture": "fastgan", "conditional": conditional}
    images = torch.randint(0, 256, (24, 3, 64, 64), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    result = train_gan(images, TrainingConfig.from_params(params), data_hash="export-fastgan",
                       labels=torch.arange(24) % 3 if conditional else None)
    checkpoint = dataclasses.replace(result.checkpoint, class_names=CLASSES if conditional else ())
    exported = export_onnx(checkpoint, tmp_path / "generator.onnx")
    model = onnx.load(tmp_path / "generator.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert not {op.op_type for op in model.graph.node} & {"RandomNormal", "RandomNormalLike"}
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata["architecture"] == "fastgan" and metadata["resolution"] == "64"
    generator = load_generator(checkpoint)
    latents = latent_vectors(range(5), LATENT_DIM)
    labels = torch.arange(5) % 3 if conditional else None
    feed = {"latent": latents.numpy()} | ({"label": labels.numpy()} if conditional else {})
    got = torch.from_numpy(_session(tmp_path / "generator.onnx").run(["image"], feed)[0])
    with torch.no_grad():
        expected = generator(latents, labels)
    assert got.shape == (5, 3, 64, 64) and (got - expected).abs().max() < 1e-4
    assert exported.max_pixel_difference <= 1
