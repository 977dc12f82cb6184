#!/usr/bin/env bash
# Gathers HERE, before the device call, the wheels that benchmarks/gpu_check.sh needs on a
# bare GPU machine (python3 3.12 with PyTorch and the image's packages, no network, no
# .venv): every distribution the project's kedro runs, MLflow tracking (SQLite store),
# kedro-mlflow, kedro-datasets' catalog types and pytorch-fid need, at the versions in this
# project's .venv, less what the GPU image already has.
#
#   benchmarks/gpu_wheels.sh [--dest DIR] [--python-version 3.12|3.11] [--list] [--image-pins]
#
# The list is derived, not kept by hand: the closure of pyproject.toml's
# [project].dependencies (extras and markers evaluated for Linux x86-64 and the target
# Python), read from the .venv's installed metadata, pinned to the .venv's versions. Left
# out, by the two hand-kept lists in the Python below, each entry with its reason: what the
# GPU image has (IMAGE, from the device tool's KINDS.md, "Python packages already there";
# never torch, torchvision, triton, nvidia-*, cuda-*: the image's CUDA build) and what
# gpu_check.sh never imports (PRUNE: dvc, kedro-telemetry). Each wheel is downloaded with
# --no-deps for cp3XX manylinux x86-64 (or py3-none-any; a release published only as a
# source archive is built here, if pure Python) into DIR (default .whl, emptied of older
# wheels first; /.whl/ goes into .git/info/exclude). Refuses (exit 1) over 60 MiB of
# wheels, or when wheels and working tree pass the device call's 64 MiB. --list prints the
# pins and downloads nothing; --image-pins prints the closure's packages left to the image,
# at the .venv's versions (to stand in for the image in a CPU check: benchmarks/README.md,
# "GPU check"). Then prints the device call. Needs the network (PyPI) and the .venv.
set -euo pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_PY="${PROJECT_ROOT}/.venv/bin/python"
DEST="${PROJECT_ROOT}/.whl"
PYVER=3.12
MODE=download
LIMIT_MIB=60     # the wheels alone
CALL_MIB=64      # the device call: working tree and carried paths together
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dest) DEST="$2"; shift 2 ;;
    --python-version) PYVER="$2"; shift 2 ;;
    --list) MODE=list; shift ;;
    --image-pins) MODE=image; shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || { echo "--python-version must look like 3.12, got $PYVER" >&2; exit 2; }
[[ -x "$VENV_PY" ]] || { echo "no $VENV_PY: the versions come from the project's .venv (make install)" >&2; exit 1; }

# Prints "carry NAME==VERSION" and "image NAME==VERSION" lines (and, on stderr, what is pruned).
plan() {
  "$VENV_PY" - "$PROJECT_ROOT/pyproject.toml" "$PYVER" <<'EOF'
import importlib.metadata as md
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pyproject, pyver = sys.argv[1], sys.argv[2]

# On the GPU image already: KINDS.md, "Python packages already there" (read 2026-11-17).
# Carried all the same only where the image's version would not do (none so far).
IMAGE = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl
meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
# The image's own CUDA build of PyTorch and everything CUDA: never carried, never followed.
NEVER = {"torch", "torchvision", "torchaudio", "triton"}
NEVER_PREFIXES = ("nvidia-", "cuda-")

# Dependencies gpu_check.sh never imports: not carried, and their own dependencies not
# followed (unless something else needs them).
PRUNE = {
    # atelier imports DVC only for DVC-tracked image folders (tracking.datasets, lazily,
    # falling back to the folder); the check's throw-away project has no .dvc file.
    "dvc": "imported only for DVC-tracked data",
    # Kedro's usage-telemetry plugin: optional, and the machine is offline.
    "kedro-telemetry": "optional kedro plugin, offline machine",
}
# MLflow is carried whole (the server and its 12 MB UI too): 36 MiB of wheels in all with
# it. Should the set ever outgrow the limit: the SQLite tracking store and pyfunc should
# need only mlflow-skinny + mlflow-tracing + sqlalchemy + alembic of it (not tried), and
# leaving out the full mlflow wheel, Flask, gunicorn, graphene, docker, huey, skops,
# databricks-sdk and what they pull would save 19.9 MiB.

env = {
    "python_version": pyver, "python_full_version": pyver + ".0",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    "os_name": "posix", "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}

found: dict[str, tuple[str, set[str]]] = {}  # name: (version, extras asked for)
pruned: set[str] = set()


def wanted(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**env, "extra": extra}) for extra in {""} | extras)


def walk(text: str, parent: str) -> None:
    requirement = Requirement(text)
    name = canonicalize_name(requirement.name)
    if name in PRUNE:
        pruned.add(name)
        return
    if name in NEVER or name.startswith(NEVER_PREFIXES):
        return
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        sys.exit(f"{name} (needed by {parent}) is not in the .venv: run `make install` first")
    version, extras = found.get(name, (dist.version, set()))
    if name in found and set(requirement.extras) <= extras:
        return
    extras = extras | set(requirement.extras)
    found[name] = (version, extras)
    for sub in dist.requires or []:
        if wanted(Requirement(sub), extras):
            walk(sub, name)


with open(pyproject, "rb") as f:
    for dependency in tomllib.load(f)["project"]["dependencies"]:
        walk(dependency, "atelier")
for name in sorted(pruned):
    print(f"left out {name}: {PRUNE[name]}", file=sys.stderr)
for name, (version, _) in sorted(found.items()):
    print("image" if name in IMAGE else "carry", f"{name}=={version}")
EOF
}

PLAN=$(plan)
CARRY=$(sed -n 's/^carry //p' <<<"$PLAN")
ON_IMAGE=$(sed -n 's/^image //p' <<<"$PLAN")
case "$MODE" in
  list) echo "$CARRY"; exit 0 ;;
  image) echo "$ON_IMAGE"; exit 0 ;;
esac

PLATFORMS=()
for N in 17 24 27 28 31 34 35 39; do PLATFORMS+=(--platform "manylinux_2_${N}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
mkdir -p "$DEST"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/atelier-wheels.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
echo "downloading $(wc -l <<<"$CARRY") wheels for cp${PYVER/./} manylinux x86-64 (the .venv's versions)..."
quiet() { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }
for PIN in $CARRY; do
  if ! "$VENV_PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
       --implementation cp "${PLATFORMS[@]}" -d "$STAGE" "$PIN" 2> >(quiet); then
    # A release published as a source archive only (antlr4-python3-runtime 4.9.3, which
    # omegaconf pins): build its wheel here, accepted only if it is pure Python.
    echo "$PIN: no wheel on the index; building one from its source archive"
    mkdir -p "$STAGE/built"
    "$VENV_PY" -m pip wheel -q --no-deps --no-binary "${PIN%%==*}" -w "$STAGE/built" "$PIN" 2> >(quiet)
    for W in "$STAGE"/built/*.whl; do
      [[ "$W" == *-py3-none-any.whl || "$W" == *-py2.py3-none-any.whl ]] \
        || { echo "$PIN built $(basename "$W"), not a pure-Python wheel: cannot carry it" >&2; exit 1; }
      mv "$W" "$STAGE"/
    done
  fi
done
wait
# One version of each, nothing left from an earlier set (two versions stop the install).
find "$DEST" -mindepth 1 -maxdepth 1 -type f -name '*.whl' -delete
mv "$STAGE"/*.whl "$DEST"/

EXCLUDE="$(git -C "$PROJECT_ROOT" rev-parse --git-path info/exclude 2>/dev/null || true)"
if [[ -n "$EXCLUDE" && "$DEST" == "$PROJECT_ROOT/.whl" ]]; then
  [[ "$EXCLUDE" = /* ]] || EXCLUDE="$PROJECT_ROOT/$EXCLUDE"
  mkdir -p "$(dirname "$EXCLUDE")"
  grep -qxF '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >>"$EXCLUDE"
fi

COUNT=$(find "$DEST" -mindepth 1 -maxdepth 1 -type f -name '*.whl' | wc -l)
WHEEL_BYTES=$(find "$DEST" -mindepth 1 -maxdepth 1 -type f -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
# What else travels: tracked and untracked-not-ignored files.
TREE_BYTES=$(cd "$PROJECT_ROOT" && git ls-files -co --exclude-standard -z \
  | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
mib() { awk "BEGIN{printf \"%.1f\", $1/1048576}"; }
echo "wheels: $COUNT in $DEST, $(mib "$WHEEL_BYTES") MiB (limit ${LIMIT_MIB} MiB)"
echo "working tree that travels beside them: $(mib "$TREE_BYTES") MiB; together $(mib $((WHEEL_BYTES + TREE_BYTES))) MiB (a device call takes ${CALL_MIB} MiB)"
echo "left to the image: $(tr '\n' ' ' <<<"$ON_IMAGE" | sed -E 's/==[^ ]+//g')"
if (( WHEEL_BYTES > LIMIT_MIB * 1048576 )); then
  echo "REFUSED: the wheels take $(mib "$WHEEL_BYTES") MiB, over the ${LIMIT_MIB} MiB limit; leave more out (PRUNE in $0)" >&2
  exit 1
fi
if (( WHEEL_BYTES + TREE_BYTES > CALL_MIB * 1048576 )); then
  echo "REFUSED: wheels and working tree take $(mib $((WHEEL_BYTES + TREE_BYTES))) MiB, over the device call's ${CALL_MIB} MiB" >&2
  exit 1
fi
if [[ "$PYVER" != 3.12 ]]; then
  echo "(cp${PYVER/./} wheels: for a local check; the GPU machine's python3 is 3.12)"
fi
cat <<EOF

The device call (the run tool): carry [".whl"], timeout_s 600, command:
  set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONPATH=/tmp/site:src bash benchmarks/gpu_check.sh 2>&1 | tee \$OUT/gpu_check.log
EOF
