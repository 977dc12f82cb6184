"""The gallery page (Gradio): a registered generator's images for the seeds you choose.

One page on 127.0.0.1: a menu of the registered model's aliases and versions, a grid for a
range of seeds with the truncation slider and (for a class-conditional generator) the
class, a walk between two seeds, and the grid as a PNG download. Everything it serves is
local: Gradio's analytics are off, there is no share link, and the theme's fonts are the
ones Gradio bundles, so the page works on a machine without internet.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

# Before Gradio is imported: it reads this once, and would otherwise call home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from atelier.gallery.drawing import (  # noqa: E402
    MAX_IMAGES,
    draw_interpolation,
    draw_seed_grid,
    save_png,
    seed_range,
)
from atelier.tracking import RegisteredVersions  # noqa: E402

# The images are a few dozen pixels wide: show them enlarged, with sharp pixels.
PAGE_CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
"""
EVERY_CLASS = "every class (seed mod number of classes)"


def _class_menu(versions: RegisteredVersions, ref: str):
    """The class dropdown for ``ref``'s generator: shown only when it is conditional."""
    names = versions.load(ref).class_names
    return gr.Dropdown(choices=[EVERY_CLASS, *names], value=EVERY_CLASS, visible=bool(names))


def _class_index(choice: int | None) -> int | None:
    # The menu is typed "index": 0 is EVERY_CLASS, i + 1 is class i.
    return None if not choice else int(choice) - 1


def _user_error(error: Exception) -> gr.Error:
    return gr.Error(str(error), title="Cannot draw this", print_exception=False)


def _file_name(*parts: object) -> str:
    # Class names are folder names: keep the download's name to safe characters.
    return re.sub(r"[^\w.-]+", "_", "-".join(str(part) for part in parts))


def page_events(versions: RegisteredVersions, initial_ref: str, output_dir: Path):
    """The page's event handlers, bound to ``versions``."""

    def on_load():
        try:
            choices = versions.references()
            refs = [ref for _, ref in choices]
            number = initial_ref.removeprefix("v")  # "v3" and "3" both name version 3
            wanted = number if number.isdigit() else initial_ref
            ref = wanted if wanted in refs else refs[0]
            return (gr.Dropdown(choices=choices, value=ref),
                    versions.describe(versions.load(ref)), _class_menu(versions, ref))
        except (LookupError, ValueError) as error:
            raise _user_error(error) from error

    def on_version(ref: str):
        try:
            return versions.describe(versions.load(ref)), _class_menu(versions, ref)
        except (LookupError, ValueError) as error:
            raise _user_error(error) from error

    def on_generate(ref: str, first_seed: float, count: float, truncation: float,
                    class_choice: int | None):
        try:
            loaded = versions.load(ref)
            seeds = seed_range(int(first_seed), int(count))
            grid = draw_seed_grid(loaded.generator, seeds, truncation, _class_index(class_choice))
        except (LookupError, ValueError) as error:
            raise _user_error(error) from error
        parts = [versions.model_name, f"v{loaded.version}", "seeds", seeds[0], seeds[-1]]
        if truncation:
            parts += ["truncation", f"{truncation:g}"]
        if loaded.class_names and class_choice:
            parts += ["class", loaded.class_names[_class_index(class_choice)]]
        return grid, save_png(grid, output_dir, _file_name(*parts))

    def on_interpolate(ref: str, first_seed: float, last_seed: float, steps: float,
                       truncation: float, class_choice: int | None):
        try:
            loaded = versions.load(ref)
            return draw_interpolation(loaded.generator, int(first_seed), int(last_seed),
                                      int(steps), truncation, _class_index(class_choice))
        except (LookupError, ValueError) as error:
            raise _user_error(error) from error

    return on_load, on_version, on_generate, on_interpolate


def build_page(versions: RegisteredVersions, initial_ref: str, tracking_uri: str,
               output_dir: Path) -> gr.Blocks:
    """The gallery as a ``gr.Blocks`` app (not yet launched)."""
    on_load, on_version, on_generate, on_interpolate = page_events(
        versions, initial_ref, output_dir)
    with gr.Blocks(title="Atelier gallery", analytics_enabled=False) as page:
        gr.Markdown(f"# Atelier gallery\nImages drawn by the registered model "
                    f"`{versions.model_name}` from the tracking store `{tracking_uri}`. "
                    "A seed always draws the same image.")
        with gr.Row(equal_height=True):
            version = gr.Dropdown(label="Model version (alias or number)", choices=[],
                                  elem_id="version", scale=1, min_width=240)
            about = gr.Markdown(elem_id="about", container=True)
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                first_seed = gr.Number(label="First seed", value=0, precision=0, minimum=0,
                                       elem_id="first-seed")
                count = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="Images",
                                  elem_id="count")
                truncation = gr.Slider(
                    0, 3, value=0, step=0.05, elem_id="truncation",
                    label="Truncation (0 = off; lower = less variety, cleaner images)")
                class_choice = gr.Dropdown(label="Class", choices=[EVERY_CLASS],
                                           value=EVERY_CLASS, type="index", visible=False,
                                           elem_id="class")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
                download = gr.DownloadButton("Download PNG", elem_id="download")
            grid = gr.Image(label="Seeds", type="pil", format="png", interactive=False,
                            buttons=["download", "fullscreen"], height=520, scale=2,
                            elem_id="grid", elem_classes=["pixelated"])
        gr.Markdown("### Between two seeds")
        with gr.Row(equal_height=True):
            from_seed = gr.Number(label="From seed", value=0, precision=0, minimum=0,
                                  elem_id="from-seed", min_width=120)
            to_seed = gr.Number(label="To seed", value=1, precision=0, minimum=0,
                                elem_id="to-seed", min_width=120)
            steps = gr.Slider(2, 16, value=8, step=1, label="Steps", elem_id="steps")
            interpolate = gr.Button("Interpolate", elem_id="interpolate")
        walk = gr.Image(label="Interpolation (spherical, between the two seeds' latents)",
                        type="pil", format="png", interactive=False, buttons=["download"],
                        height=180, elem_id="interpolation", elem_classes=["pixelated"])
        page.load(on_load, outputs=[version, about, class_choice])
        version.input(on_version, inputs=version, outputs=[about, class_choice])
        # One drawing at a time, whichever button asked: the CPU is shared.
        generate.click(on_generate, inputs=[version, first_seed, count, truncation, class_choice],
                       outputs=[grid, download], concurrency_id="draw")
        interpolate.click(on_interpolate, outputs=walk, concurrency_id="draw", inputs=[
            version, from_seed, to_seed, steps, truncation, class_choice])
    return page


def serve_gallery(versions: RegisteredVersions, initial_ref: str, tracking_uri: str,
                  host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the gallery on ``http://host:port`` until interrupted."""
    with tempfile.TemporaryDirectory(prefix="atelier-gallery-") as output_dir:
        page = build_page(versions, initial_ref, tracking_uri, Path(output_dir))
        page.queue(default_concurrency_limit=1)
        page.launch(server_name=host, server_port=port, share=False, ssr_mode=False,
                    mcp_server=False, pwa=False, enable_monitoring=False, show_error=True,
                    footer_links=[], css=PAGE_CSS, theme=gr.themes.Default())
