"""Tables, targets and the Pareto plot of benchmarks/frontier.py's results (JSON in, Markdown and a PNG out)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

# Issue 20's targets, each against the float32 teacher at batch 32 x 128.
TARGETS = {
    "minilm": {"speedup": 10.0, "size_ratio": 0.10, "retention": 0.99, "seeds": 3},
    "mpnet": {"speedup": 12.0, "size_ratio": None, "retention": 0.98, "seeds": 1},
}
SHAPE, SINGLE = "32x128", "1x128"


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def points(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per student and form: speed-up, size ratio and retention against the teacher."""
    teacher = result["teacher"]
    out = []
    for row in result["students"]:
        for form, entry in row["forms"].items():
            accuracy, sd = mean_sd(entry["accuracy"])
            latency = entry.get("latency_ms", {})
            out.append({
                "student": row["label"], "arch": row["arch"], "selection": row["selection"], "form": form,
                "shown_selection": "-" if row.get("full_width") else row["selection"],
                "layers": row["layers"], "hidden": row["hidden"], "params": entry["params"],
                "size_mb": entry["size_mb"], "size_ratio": entry["size_mb"] / teacher["size_mb"],
                "accuracy": accuracy, "sd": sd, "seeds": len(entry["accuracy"]),
                "retention": accuracy / teacher["accuracy"],
                "ms": latency.get(SHAPE), "ms1": latency.get(SINGLE),
                "speedup": teacher["latency_ms"][SHAPE] / latency[SHAPE] if SHAPE in latency else None,
                "speedup1": teacher["latency_ms"][SINGLE] / latency[SINGLE] if SINGLE in latency else None,
            })  # fmt: skip
    for point in out:
        point["frontier"] = point["selection"] == "importance" and not any(
            other is not point
            and other["selection"] == "importance"
            and other["speedup"] >= point["speedup"]
            and other["retention"] >= point["retention"]
            and (other["speedup"] > point["speedup"] or other["retention"] > point["retention"])
            for other in out
        )
    return out


def frontier_table(result: dict[str, Any]) -> str:
    teacher = result["teacher"]
    t_ms, t_ms1 = teacher["latency_ms"][SHAPE], teacher["latency_ms"][SINGLE]
    lines = [
        f"Teacher: {teacher['layers']} x {teacher['hidden']}, accuracy {teacher['accuracy']:.4f}, "
        f"{teacher['params'] / 1e6:.1f} M parameters, {teacher['size_mb']:.1f} MB; {t_ms:.1f} ms at 32 x 128, "
        f"{t_ms1:.1f} ms at 1 x 128.",
        "",
        "| student | selection | form | params (M) | size (MB) | size / teacher | ms 32x128 | speed-up "
        "| ms 1x128 | speed-up 1x128 | accuracy (mean ± sd) | seeds | retention | Pareto |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for p in points(result):
        lines.append(
            f"| {p['arch']} | {p['shown_selection']} | {p['form']} | {p['params'] / 1e6:.2f} | {p['size_mb']:.1f} "
            f"| {p['size_ratio']:.3f} | {p['ms']:.1f} | {p['speedup']:.1f}x | {p['ms1']:.2f} | {p['speedup1']:.1f}x "
            f"| {p['accuracy']:.4f} ± {p['sd']:.4f} | {p['seeds']} | {p['retention']:.1%} "
            f"| {'*' if p['frontier'] else ''} |"
        )
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> str:
    """Which points meet the setting's target, and the nearest misses on each axis."""
    target = TARGETS[result["setting"]]
    every = [p for p in points(result) if p["selection"] == "importance"]

    def fits(p: dict[str, Any], skip: str = "") -> bool:
        return all((
            skip == "speedup" or p["speedup"] >= target["speedup"],
            skip == "size" or target["size_ratio"] is None or p["size_ratio"] <= target["size_ratio"],
            skip == "retention" or (p["retention"] >= target["retention"] and p["seeds"] >= target["seeds"]),
        ))  # fmt: skip

    def name(p: dict[str, Any]) -> str:
        return f"{p['arch']} {p['form']} ({p['speedup']:.1f}x, {p['size_ratio']:.3f}, {p['retention']:.1%})"

    size = f", size <= {target['size_ratio']}" if target["size_ratio"] is not None else ""
    lines = [
        f"Target: speed-up >= {target['speedup']}x at 32 x 128{size}, retention >= {target['retention']:.0%} "
        f"({target['seeds']} seed(s)). Met by: "
        + (", ".join(name(p) for p in every if fits(p)) or "none")
    ]
    for axis in ("speedup", "size", "retention"):
        near = [p for p in every if fits(p, skip=axis) and not fits(p)]
        if near:
            lines.append(f"- missing only {axis}: " + ", ".join(name(p) for p in near))
    return "\n".join(lines)


def selection_table(result: dict[str, Any]) -> str:
    """Importance against keep-first-k, per architecture with both, per form."""
    rows = {(r["arch"], r["selection"]): r for r in result["students"]}
    lines = [
        "| student | form | importance | first-k | difference (points) | per seed |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for (arch, selection), row in rows.items():
        other = rows.get((arch, "first"))
        if selection != "importance" or other is None:
            continue
        for form in row["forms"]:
            a, b = row["forms"][form]["accuracy"], other["forms"][form]["accuracy"]
            diffs = ", ".join(f"{(x - y) * 100:+.1f}" for x, y in zip(a, b, strict=False))
            lines.append(
                f"| {arch} | {form} | {statistics.mean(a):.4f} | {statistics.mean(b):.4f} "
                f"| {(statistics.mean(a) - statistics.mean(b)) * 100:+.2f} | {diffs} |"
            )
    return "\n".join(lines)


def breakdown_table(result: dict[str, Any]) -> str:
    lines = []
    for shape, models in result.get("breakdown", {}).items():
        lines += [
            f"Batch {shape.replace('x', ' x ').replace(' t', ', threads ')} (median ms of one forward "
            "pass; share of the total):",
            "",
            "| model | embeddings | attention | feed-forward | head | other | total |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, parts in models.items():
            cells = [
                f"{parts[p]:.2f} ({parts[p] / parts['total']:.0%})"
                for p in ("embeddings", "attention", "feed-forward", "head", "other")
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {parts['total']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def few_labels_table(result: dict[str, Any]) -> str:
    teacher = result["teacher"]["accuracy"]
    lines = [
        f"Teacher: accuracy {teacher:.4f}.",
        "",
        "| student | selection | accuracy (mean ± sd) | per seed | retention |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    for row in result["students"]:
        mean, sd = mean_sd(row["accuracy"])
        seeds = ", ".join(f"{a:.4f}" for a in row["accuracy"])
        lines.append(
            f"| {row['arch']} | {row['selection']} | {mean:.4f} ± {sd:.4f} | {seeds} | {mean / teacher:.1%} |"
        )
    return "\n".join(lines)


def recipe_table(result: dict[str, Any]) -> str:
    lines = [
        f"Teacher: accuracy {result['teacher']['accuracy']:.4f}.",
        "",
        "| student | epochs | learning rate | seed | accuracy (fp32) | training (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["students"]:
        lines.append(
            f"| {r['label']} | {r['epochs']:g} | {r['learning_rate']:g} | {r['seed']} | {r['accuracy']:.4f} "
            f"| {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def accuracy_table(result: dict[str, Any]) -> str:
    """A run without timing: every form's accuracy."""
    teacher = result["teacher"]["accuracy"]
    lines = [
        f"Teacher: accuracy {teacher:.4f}.",
        "",
        "| student | selection | form | size (MB) | accuracy (mean ± sd) | per seed | retention |",
        "| --- | --- | --- | ---: | ---: | --- | ---: |",
    ]
    for row in result["students"]:
        for form, entry in row["forms"].items():
            mean, sd = mean_sd(entry["accuracy"])
            seeds = ", ".join(f"{a:.4f}" for a in entry["accuracy"])
            lines.append(
                f"| {row['arch']} | {'-' if row.get('full_width') else row['selection']} | {form} "
                f"| {entry['size_mb']:.1f} | {mean:.4f} ± {sd:.4f} | {seeds} | {mean / teacher:.1%} |"
            )
    return "\n".join(lines)


def threads_table(result: dict[str, Any]) -> str:
    """Speed-ups timed with other thread counts than the main one (`--threads 2,1`), if any."""
    teacher = result["teacher"]["latency_ms"]
    keys = [key for key in teacher if " t" in key]
    if not keys:
        return ""
    lines = [
        "| student | form | " + " | ".join(f"ms {k} | speed-up {k}" for k in keys) + " |",
        "| --- | --- |" + " ---: | ---: |" * len(keys),
        "| teacher | fp32 | " + " | ".join(f"{teacher[k]:.2f} | 1.0x" for k in keys) + " |",
    ]
    for row in result["students"]:
        if row["selection"] != "importance":
            continue
        for form, entry in row["forms"].items():
            ms = entry["latency_ms"]
            cells = " | ".join(f"{ms[k]:.2f} | {teacher[k] / ms[k]:.1f}x" for k in keys)
            lines.append(f"| {row['arch']} | {form} | {cells} |")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    setting = result["setting"]
    if setting == "few-labels":
        return few_labels_table(result)
    if setting.startswith("recipe"):
        return recipe_table(result)
    if "timing" not in result:
        return accuracy_table(result)
    loads = ", ".join(
        f"{shape}: {v['before']:.2f} -> {v['after']:.2f} ({v['seconds']:.0f} s)"
        for shape, v in result["timing"]["load"].items()
    )
    return "\n\n".join([
        frontier_table(result), targets(result), selection_table(result), threads_table(result),
        breakdown_table(result), f"Load average during timing: {loads}. Machine: {result['machine']}",
    ])  # fmt: skip


# ---- the Pareto plot ------------------------------------------------------------------------------

MARKERS = {"fp32": "o", "int8": "s", "onnx-int8": "^"}


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Retention against speed-up at 32 x 128, one point per student and form, the Pareto front dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        every = [p for p in points(result) if p["selection"] == "importance"]
        widths = sorted({p["hidden"] for p in every}, reverse=True)
        colours = dict(
            zip(widths, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False)
        )
        for p in every:
            ax.errorbar(p["speedup"], p["retention"] * 100, yerr=p["sd"] / result["teacher"]["accuracy"] * 100,
                        marker=MARKERS[p["form"]], color=colours[p["hidden"]], markersize=7, capsize=2)  # fmt: skip
            ax.annotate(p["arch"], (p["speedup"], p["retention"] * 100), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")  # fmt: skip
        front = sorted((p for p in every if p["frontier"]), key=lambda p: p["speedup"])
        ax.plot([p["speedup"] for p in front], [p["retention"] * 100 for p in front], "k--", lw=1)
        target = TARGETS[name]
        ax.axvline(target["speedup"], color="grey", lw=0.8, ls=":")
        ax.axhline(target["retention"] * 100, color="grey", lw=0.8, ls=":")
        teacher = result["teacher"]
        ax.set_title(
            f"{name}: teacher {teacher['layers']} x {teacher['hidden']}, accuracy {teacher['accuracy']:.3f}"
        )
        ax.set_xscale("log")
        ax.set_xlabel("speed-up over the fp32 teacher, batch 32 x 128, CPU (log scale)")
        ax.set_ylabel("accuracy, % of the teacher's")
        for width, colour in colours.items():
            ax.plot([], [], "o", color=colour, label=f"hidden {width}")
        for form, marker in MARKERS.items():
            ax.plot([], [], marker, color="black", fillstyle="none", label=form)
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results_dir: Path, plot_path: Path) -> str:
    """Every frontier result in `results_dir` as Markdown, and the Pareto plot of the timed ones."""
    parts, timed = [], {}
    for name in ("minilm", "few_labels", "mpnet", "recipe_minilm", "recipe_2x96"):
        file = results_dir / f"frontier_{name}.json"
        if not file.is_file():
            continue
        result = json.loads(file.read_text())
        parts.append(
            f"## {file.name}\n\n{markdown(result)}\n\nCommand: `{result.get('command', '')}`"
        )
        if name in ("minilm", "mpnet"):
            timed[name] = result
    if timed:
        plot(timed, plot_path)
        parts.append(f"Plot: {plot_path}")
    return "\n\n".join(parts)
