"""Image source -> ``manifest`` (one row per file), ``rejection_report`` and ``lineage``."""

from kedro.pipeline import Node, Pipeline

from atelier.pipelines.data_ingestion.nodes import (
    build_manifest,
    inspect_source,
    record_lineage,
    report_rejections,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=inspect_source,
                inputs="params:ingestion",
                outputs="inspected_files",
                name="inspect_source",
            ),
            Node(
                func=build_manifest,
                inputs="inspected_files",
                outputs="manifest",
                name="build_manifest",
            ),
            Node(
                func=report_rejections,
                inputs=["inspected_files", "params:ingestion.source"],
                outputs="rejection_report",
                name="report_rejections",
            ),
            Node(
                func=record_lineage,
                inputs=["manifest", "source_version", "params:ingestion"],
                outputs="lineage",
                name="record_lineage",
            ),
        ]
    )
