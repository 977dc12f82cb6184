"""Training from shards at a scale the tensor path cannot hold: memory, speed, write rate.

    .venv/bin/python benchmarks/scale.py                  # 200,000 RGB images at 64 px, ~6 min
    .venv/bin/python benchmarks/scale.py --quick          # smoke run, under a minute
    .venv/bin/python benchmarks/scale.py --paper-only     # the paper figures, no data

What it measures, in one run:

1. **Paper figures**: bytes per image, images per shard (``images_per_shard``), shards and
   gigabytes for 1M RGB images at 64, 128 and 256 px with ``shard_mb`` 64.
2. **Shard write throughput**: ``--images`` synthetic RGB images (smooth random colour
   fields, deterministic per shard) written with ``write_shard`` / ``write_index`` one
   shard at a time, so the writer never holds more than a shard. MB/s and images/s of the
   write calls (encode, sha256, atomic write into the page cache), then again with the
   ``os.sync()`` that puts them on disk; generation is timed apart and left out. Then the
   read rate of every shard as training reads one (``read_shard``: bytes, sha256 check,
   decode), from the page cache the write left them in.
3. **Streaming under a memory limit**: ``train_gan`` on the ``ShardedImages`` split in a
   child process that a watchdog in this process holds to ``--rss-limit-mb``: it reads the
   child's peak RSS (``VmHWM``, the kernel's high-water mark) every ``--poll-ms`` and kills
   it above the limit. Peak RSS (the child's ``VmHWM`` when training ends; the watchdog's
   figure, over the whole life, also has the interpreter's exit, which faults in ~170 MiB
   of torch's library pages), images/s over the steps after ``--warmup``, steps done.
4. **The tensor path on the same data, same limit**: a child that builds the split as
   one uint8 tensor (preallocated and filled shard by shard: the least memory any tensor
   path needs) before training. Whether the watchdog kills it, and at how many images.
5. **Tensor against shards where both fit**: ``--small`` images, the same networks, steps
   and child setup, ``--repeats`` rounds alternating which path goes first; images/s mean
   +- standard deviation and peak RSS of each.

DCGAN at 64 x 64 x 3, conf/base's training parameters except batch ``--batch-size``,
widths ``--width``, fp32, no evaluation, one checkpoint at the end (into a scratch folder),
``--threads`` torch threads per child. The data go to ``--data-dir`` (default: a scratch
folder under the system's temporary folder), deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
GIB = 2**30
CHANNELS = 3


# ----------------------------------------------------------------------------- memory

def process_memory(pid: int | str = "self") -> dict[str, int]:
    """A process's memory from /proc/<pid>/status (empty once it has gone): ``peak_rss``
    (``VmHWM``, the kernel's high-water mark of the resident set: it keeps a peak that
    lasted less than a polling interval, such as a shard's bytes freed a moment later),
    ``rss`` now, and ``rss`` now split into anonymous memory (heap: tensors, buffers) and
    file pages (mapped libraries: torch's alone are about 400 MiB)."""
    fields = {"VmHWM": "peak_rss", "VmRSS": "rss", "RssAnon": "rss_anon", "RssFile": "rss_file"}
    memory = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return memory
    for line in lines:
        key, _, value = line.partition(":")
        if key in fields:
            memory[fields[key]] = int(value.split()[0]) * 1024
    return memory  # a zombie's status has no Vm lines: empty


# ----------------------------------------------------------------------------- data

def synthetic_shard(count: int, resolution: int, seed: int, chunk: int = 512):
    """``count`` smooth random colour fields (uint8 count x 3 x res x res): coarse blobs plus
    finer texture, upsampled; a function of ``seed`` alone, built ``chunk`` images at a
    time so the float temporaries stay small."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    stream = torch.Generator().manual_seed(seed)
    size = (resolution, resolution)
    images = np.empty((count, CHANNELS, resolution, resolution), dtype=np.uint8)
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        coarse = torch.rand((n, CHANNELS, 4, 4), generator=stream)
        fine = torch.rand((n, CHANNELS, 16, 16), generator=stream)
        field = (0.75 * F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
                 + 0.25 * F.interpolate(fine, size=size, mode="bilinear", align_corners=False))
        images[start:start + n] = (field.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return images


def write_dataset(folder: Path, count: int, resolution: int, shard_mb: float, seed: int) -> dict:
    """Write ``count`` synthetic images as the ``train`` split of a sharded dataset in
    ``folder``, one shard in memory at a time; return the timings."""
    from atelier.core.shards import images_per_shard, split_slices, write_index, write_shard

    per_shard = images_per_shard(shard_mb, CHANNELS, resolution)
    entries, generate_s, write_s = [], 0.0, 0.0
    for number, rows in enumerate(split_slices(count, per_shard)):
        start = time.perf_counter()
        images = synthetic_shard(rows.stop - rows.start, resolution, seed * 1_000_003 + number)
        generate_s += time.perf_counter() - start
        start = time.perf_counter()
        entries.append(write_shard(str(folder), "train", number, images))
        write_s += time.perf_counter() - start
        del images
    start = time.perf_counter()
    write_index(str(folder), {"channels": CHANNELS, "resolution": resolution,
                              "splits": {"train": {"count": count, "shards": entries}}})
    write_s += time.perf_counter() - start
    start = time.perf_counter()
    os.sync()  # write_shard leaves the bytes in the page cache (fsync=False)
    sync_s = time.perf_counter() - start
    shard_bytes = sum((folder / name).stat().st_size for name, _, _ in entries)
    return {"images": count, "shards": len(entries), "per_shard": per_shard,
            "bytes": shard_bytes, "generate_s": generate_s, "write_s": write_s, "sync_s": sync_s}


# ----------------------------------------------------------------------------- child

def child_main(spec: dict) -> None:
    """One training run (``spec``), printing JSON lines: progress, then the result."""
    import torch
    import yaml

    def emit(**fields) -> None:
        print(json.dumps(fields), flush=True)

    torch.set_num_threads(spec["threads"])
    from atelier.core.shards import ShardedImages
    from atelier.core.training import TrainingConfig, train_gan

    emit(event="imported", **process_memory())
    sharded = ShardedImages.open(spec["data"], "train")
    start = time.perf_counter()
    if spec["source"] == "tensor":
        # The least a tensor path can hold: the split once, no second copy while building it.
        images = torch.empty(sharded.shape, dtype=torch.uint8)
        filled = 0
        for number, shard in enumerate(sharded.shards):
            images[filled:filled + shard.count] = sharded.read_shard(number)
            filled += shard.count
            emit(event="loading", images=filled, **process_memory())
    else:
        images = sharded
    load_s = time.perf_counter() - start
    emit(event="data", load_s=load_s, **process_memory())

    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())["training"]
    params.update(
        architecture="dcgan", device="cpu", devices=1, max_steps=spec["warmup"] + spec["steps"],
        batch_size=spec["batch_size"], g_width=spec["width"], d_width=spec["width"],
        precision="fp32", deterministic=False, eval_every=0, log_every=spec["warmup"],
        sample_every=0, checkpoint_every=0, checkpoint_dir=spec["checkpoints"], resume="never",
    )
    config = TrainingConfig.from_params(params)
    start = time.perf_counter()
    result = train_gan(images, config, data_hash=f"scale-{spec['source']}")
    train_s = time.perf_counter() - start
    emit(event="result", images_per_sec=timed_images_per_second(result.history, spec),
         steps=result.history[-1]["step"], load_s=load_s, train_s=train_s, **process_memory())


def timed_images_per_second(history: list[dict], spec: dict) -> float:
    """Images/s over the logged intervals after the first (``log_every`` = the warm-up);
    the loop's clock leaves logging and checkpointing out."""
    seconds, steps, previous = 0.0, 0, history[0]["step"]
    for row in history[1:]:
        interval = row["step"] - previous
        seconds += interval * spec["batch_size"] / row["images_per_sec"]
        steps, previous = steps + interval, row["step"]
    return steps * spec["batch_size"] / seconds


# ----------------------------------------------------------------------------- watchdog

def run_child(spec: dict, limit: int, poll_s: float) -> dict:
    """Run ``child_main(spec)`` in a fresh interpreter, killed as soon as its peak RSS passes
    ``limit`` bytes; returns its last JSON lines merged with the watchdog's figures."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines, errors = [], []
    readers = [threading.Thread(target=lambda s=s, out=out: out.extend(s), daemon=True)
               for s, out in ((child.stdout, lines), (child.stderr, errors))]
    for reader in readers:
        reader.start()
    peak, killed_at = 0, None
    while child.poll() is None:
        # The high-water mark, not the RSS of the moment: a sample every poll_s would miss
        # a peak between samples (a shard read holds ~2 shards of bytes for a moment).
        peak = max(peak, process_memory(child.pid).get("peak_rss", 0))
        if peak > limit:
            child.kill()
            killed_at = peak
            break
        time.sleep(poll_s)
    child.wait()
    for reader in readers:
        reader.join()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    outcome = {"watchdog_peak": peak, "killed": killed_at is not None, "killed_at": killed_at,
               "returncode": child.returncode, "wall_s": time.perf_counter() - start,
               "load": os.getloadavg()[0]}  # other jobs on the cores, over the last minute
    for event in events:
        outcome[event["event"]] = event
    if killed_at is None and child.returncode != 0:
        raise RuntimeError(f"The {spec['source']} child failed (exit {child.returncode}):\n"
                           + "".join(errors[-40:]))
    return outcome


# ----------------------------------------------------------------------------- report

def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


def print_paper_figures(shard_mb: float) -> None:
    from atelier.core.shards import images_per_shard

    print(f"=== paper figures: 1,000,000 RGB images, shard_mb {shard_mb:g}")
    print(f"{'resolution':>10} {'bytes/image':>12} {'images/shard':>13} {'shards':>7} {'total':>9}")
    for resolution in (64, 128, 256):
        per_image = CHANNELS * resolution * resolution
        per_shard = images_per_shard(shard_mb, CHANNELS, resolution)
        shards = math.ceil(1_000_000 / per_shard)
        print(f"{resolution:>7} px {per_image:>12,} {per_shard:>13,} {shards:>7,} "
              f"{1_000_000 * per_image / 1e9:>6.1f} GB")


def describe_run(label: str, outcome: dict, limit: int) -> None:
    imported = outcome.get("imported", {}).get("rss")
    anon = outcome.get("imported", {}).get("rss_anon")
    if outcome["killed"]:
        loaded = outcome.get("loading", {}).get("images", 0)
        print(f"{label:<34} KILLED by the watchdog at a peak RSS of "
              f"{outcome['killed_at'] / MIB:,.1f} MiB > limit "
              f"{mib(limit)} after {outcome['wall_s']:.1f} s, {loaded:,} images loaded "
              f"(RSS after imports {mib(imported)}, {mib(anon)} of it anonymous)")
        return
    result = outcome["result"]
    print(f"{label:<34} {result['images_per_sec']:>7,.0f} images/s, {result['steps']} steps, "
          f"peak RSS {mib(result['peak_rss'])} (whole life, exit included: "
          f"{mib(outcome['watchdog_peak'])}; after imports {mib(imported)}, {mib(anon)} anonymous; data ready "
          f"{mib(outcome['data']['rss'])}; at the end {mib(result['rss_anon'])} anonymous), "
          f"data {result['load_s']:.1f} s, training {result['train_s']:.1f} s, "
          f"load average {outcome['load']:.1f}")


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):,.0f} +- {std:,.0f}"


# ----------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200_000, help="images of the large dataset")
    parser.add_argument("--small", type=int, default=20_000,
                        help="images of the dataset both paths train on")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--shard-mb", type=float, default=64, help="preprocessing.shard_mb")
    parser.add_argument("--rss-limit-mb", type=float, default=1536,
                        help="the training child's RSS limit (MiB)")
    parser.add_argument("--poll-ms", type=float, default=50, help="watchdog polling interval")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (= log_every)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16, help="g_width and d_width")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the tensor/shards comparison")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training child")
    parser.add_argument("--seed", type=int, default=0, help="seeds the synthetic images")
    parser.add_argument("--data-dir", type=Path, help="where the shards go (default: a scratch folder)")
    parser.add_argument("--keep", action="store_true", help="keep the data afterwards")
    parser.add_argument("--paper-only", action="store_true", help="print the paper figures and stop")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 5,000 and 2,000 images, 10 timed steps, 1 round")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    if args.quick:
        args.images, args.small, args.steps, args.warmup, args.repeats = 5_000, 2_000, 10, 5, 1

    print_paper_figures(args.shard_mb)
    if args.paper_only:
        return
    import torch

    limit = int(args.rss_limit_mb * MIB)
    total_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{total_ram / GIB:.1f} GiB, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, "
          f"Python {platform.python_version()}")
    print(f"training: DCGAN {args.resolution}x{args.resolution}x{CHANNELS}, batch {args.batch_size}, "
          f"widths {args.width}, fp32, {args.warmup} + {args.steps} timed steps, "
          f"{args.threads} torch thread(s) per child, RSS limit {mib(limit)}")
    scratch = Path(tempfile.mkdtemp(prefix="atelier-scale-"))
    root = args.data_dir or scratch / "data"
    started = time.perf_counter()
    try:
        spec = {"warmup": args.warmup, "steps": args.steps, "batch_size": args.batch_size,
                "width": args.width, "threads": args.threads}

        def run(source: str, data: Path, name: str) -> dict:
            return run_child({**spec, "source": source, "data": str(data),
                              "checkpoints": str(scratch / "checkpoints" / name)},
                             limit, args.poll_ms / 1000)

        # ------------------------------------------------------------ write
        large = root / f"large-{args.images}"
        print(f"\n=== shard write: {args.images:,} images, shard_mb {args.shard_mb:g} -> {large}")
        written = write_dataset(large, args.images, args.resolution, args.shard_mb, args.seed)
        megabytes = written["bytes"] / 1e6
        print(f"shards: {written['shards']} of {written['per_shard']:,} images "
              f"({megabytes:,.0f} MB in all; {args.images * CHANNELS * args.resolution ** 2 / GIB:.2f} "
              f"GiB of pixels)")
        print(f"write calls (encode, sha256, write to page cache): {written['write_s']:.1f} s, "
              f"{megabytes / written['write_s']:,.0f} MB/s, {args.images / written['write_s']:,.0f} images/s")
        with_sync = written["write_s"] + written["sync_s"]
        print(f"with os.sync() to disk (+{written['sync_s']:.1f} s): {megabytes / with_sync:,.0f} MB/s, "
              f"{args.images / with_sync:,.0f} images/s")
        print(f"generation (not in the figures above): {written['generate_s']:.1f} s; "
              f"writer's peak RSS {mib(process_memory()['peak_rss'])} (this process, torch imported)")

        from atelier.core.shards import ShardedImages

        start = time.perf_counter()
        for _ in ShardedImages.open(large, "train").iter_shards():
            pass
        read_s = time.perf_counter() - start
        print(f"shard read (bytes from the page cache, sha256 check, decode): {read_s:.1f} s, "
              f"{megabytes / read_s:,.0f} MB/s, {args.images / read_s:,.0f} images/s, "
              f"{read_s / written['shards'] * 1000:,.0f} ms per shard")

        # ------------------------------------------------------------ large dataset
        print(f"\n=== {args.images:,} images under an RSS limit of {mib(limit)}")
        describe_run("shards (streamed)", run("shards", large, "large-shards"), limit)
        need = args.images * CHANNELS * args.resolution ** 2
        print(f"tensor path needs {mib(need)} for the pixels alone, plus the process "
              f"(torch, networks)")
        describe_run("tensor (whole split in memory)", run("tensor", large, "large-tensor"), limit)

        # ------------------------------------------------------------ small dataset
        small = root / f"small-{args.small}"
        written = write_dataset(small, args.small, args.resolution, args.shard_mb, args.seed)
        print(f"\n=== tensor against shards: {args.small:,} images ({written['shards']} shards, "
              f"{mib(written['bytes'])}), {args.repeats} round(s)")
        results: dict[str, list[dict]] = {"tensor": [], "shards": []}
        for round_number in range(args.repeats):
            order = ("tensor", "shards") if round_number % 2 == 0 else ("shards", "tensor")
            for source in order:
                outcome = run(source, small, f"small-{source}-{round_number}")
                describe_run(f"round {round_number + 1}, {source}", outcome, limit)
                if not outcome["killed"]:
                    results[source].append(outcome["result"])
        print()
        for source, rows in results.items():
            if rows:
                print(f"{source:<7} {mean_std([row['images_per_sec'] for row in rows])} images/s, "
                      f"peak RSS {mean_std([row['peak_rss'] / MIB for row in rows])} MiB "
                      f"({len(rows)} run(s))")
        if results["tensor"] and results["shards"]:
            ratio = (statistics.mean(r["images_per_sec"] for r in results["shards"])
                     / statistics.mean(r["images_per_sec"] for r in results["tensor"]))
            print(f"shards / tensor: {ratio:.3f}x")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
            if args.data_dir:
                for name in (f"large-{args.images}", f"small-{args.small}"):
                    shutil.rmtree(args.data_dir / name, ignore_errors=True)
    print(f"\ntotal: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
