"""The gallery: a page on 127.0.0.1 that draws any registered generator version's images.

``atelier gallery`` (``make gallery``) serves it with Gradio, the project's ``gallery``
extra; only :mod:`~atelier.gallery.app` imports Gradio, so the rest of Atelier works
without it.

- the registered model's aliases and versions come from the tracking adapter
  (:class:`atelier.tracking.RegisteredVersions`): like the pipelines, the gallery never
  talks to MLflow itself; which store it reads is :func:`atelier.tracking.configured_store`'s
  decision, as for ``atelier export`` and ``atelier.reproduce``.
- :mod:`~atelier.gallery.drawing`: seed grids and interpolations (:mod:`atelier.core.generate`).
- :mod:`~atelier.gallery.app`: the Gradio page; :mod:`~atelier.gallery.cli`: the command.
"""
