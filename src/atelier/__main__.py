"""``atelier`` / ``python -m atelier``: ``kedro run`` (same options), ``atelier gallery``, or
``atelier export``.

``atelier gallery [--host --port --model --ref --tracking-uri]`` serves the gallery page
(:mod:`atelier.gallery.cli`); ``atelier export onnx MODEL_URI OUT.onnx [--seeds --truncation
--opset --force --tracking-uri]`` writes a generator as an ONNX file
(:mod:`atelier.export_cli`); any other arguments go to Kedro's ``run`` command.
"""

import sys
from pathlib import Path
from typing import Any


def main(*args, **kwargs) -> Any:
    argv = list(kwargs.get("args") or (args[0] if args else sys.argv[1:]))
    if argv[:1] == ["gallery"]:
        from atelier.gallery.cli import main as gallery

        sys.exit(gallery(argv[1:]))
    if argv[:1] == ["export"]:
        from atelier.export_cli import main as export

        sys.exit(export(argv[1:]))

    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
