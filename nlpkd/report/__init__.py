"""The report of a run: the typed [`Report`], its text, model card and plot, the one writer
([`write_report`]), and the measurements that fill it (task metrics, size, latency, perplexity).

Of its modules only the writer imports the card and the plot; the others read the report."""

from .card import build_model_card, write_model_card
from .evaluate import (
    build_report,
    changed_predictions,
    evaluate_model,
    evaluate_predict,
    perplexity,
)
from .measure import count_parameters, latency_batches, measure_latency, size_on_disk_mb
from .metrics import compute_task_metrics, make_compute_metrics
from .plot import PLOT_NAME, plot_report
from .report import METRICS_NAME, Report, Variant, load_report
from .text import deployment_notes, format_summary, variants_table
from .writer import write_report

__all__ = [
    "METRICS_NAME",
    "PLOT_NAME",
    "Report",
    "Variant",
    "build_model_card",
    "build_report",
    "changed_predictions",
    "compute_task_metrics",
    "count_parameters",
    "deployment_notes",
    "evaluate_model",
    "evaluate_predict",
    "format_summary",
    "latency_batches",
    "load_report",
    "make_compute_metrics",
    "measure_latency",
    "perplexity",
    "plot_report",
    "size_on_disk_mb",
    "variants_table",
    "write_model_card",
    "write_report",
]
