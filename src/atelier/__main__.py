"""``atelier`` / ``python -m atelier``: ``kedro run`` (same options), or ``atelier gallery``.

``atelier gallery [--host --port --model --ref --tracking-uri]`` serves the gallery page
(:mod:`atelier.gallery.cli`); any other arguments go to Kedro's ``run`` command.
"""

import sys
from pathlib import Path
from typing import Any


def main(*args, **kwargs) -> Any:
    argv = list(kwargs.get("args") or (args[0] if args else sys.argv[1:]))
    if argv[:1] == ["gallery"]:
        from atelier.gallery.cli import main as gallery

        sys.exit(gallery(argv[1:]))

    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
