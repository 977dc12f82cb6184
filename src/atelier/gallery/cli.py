"""``atelier gallery``: serve the gallery page for a registered generator.

Loads the chosen version before the page starts, so a wrong store, model or alias stops
here with a message instead of greeting the browser with an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

from atelier.tracking import configured_store

INSTALL_HINT = ('The gallery needs Gradio, in the project\'s "gallery" extra: '
                'pip install -e ".[gallery]" (or run `make gallery`, which installs it).')


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="atelier gallery",
        description="Serve a page that draws a registered generator's images for chosen "
                    "seeds (Gradio), on http://HOST:PORT.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                        "%(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="default: %(default)s")
    parser.add_argument("--model", default="atelier-generator",
                        help="registered model name (default: %(default)s)")
    parser.add_argument("--ref", default="champion",
                        help="alias or version number shown first; any other can be chosen "
                             "on the page (default: %(default)s)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking store (default: MLFLOW_TRACKING_URI, else the "
                             "project's conf/*/mlflow.yml, as for `kedro run`)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run ``atelier gallery`` with ``argv`` (default: ``sys.argv[2:]``)."""
    args = parse_args(sys.argv[2:] if argv is None else argv)
    if importlib.util.find_spec("gradio") is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    # A server's log, not a terminal: no progress bar for each file of the model download.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    started = time.monotonic()
    try:
        store = configured_store(args.tracking_uri)
        store.require_existing()
        from atelier.tracking import connect_registry

        versions = connect_registry(args.model, store.tracking_uri, store.registry_uri)
        loaded = versions.load(args.ref)
    except LookupError as error:
        print(f"atelier gallery: {error}", file=sys.stderr)
        return 2
    from atelier.gallery.app import serve_gallery

    print(f"atelier gallery: {args.model} v{loaded.version} ({args.ref}) from "
          f"{store.tracking_uri}, loaded in {time.monotonic() - started:.1f} s; serving on "
          f"http://{args.host}:{args.port}", flush=True)
    serve_gallery(versions, args.ref, store.tracking_uri, args.host, args.port)
    return 0
