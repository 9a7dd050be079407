"""The table `lossbench bench` prints: one line per measured row, then the ratios.

Per row: the training path (Keras's `fit`, or JAX's device loop), images/s through it, the
compiled step's images/s alone on data on the device ("step img/s") and the share of a
step's wall time spent outside the compiled step ("host %": feeding, Python, copies).

In:  the bench's results (the layout of `lossbench.bench`'s JSON).
Out: the text of the table, for stdout and the bench's log.
"""

from __future__ import annotations


def format_table(results: dict) -> str:
    header = (f"{'backend':<11}{'path':<12}{'precision':<16}{'batch':>6}{'matmul GF/s':>12}"
              f"{'img/s':>9}{'step img/s':>11}{'host %':>7}"
              f"{'train eff':>10}{'epoch s':>9}{'ideal s':>9}{'epoch eff':>10}")
    cpu = results.get("cpu", {})
    lines = []
    if cpu:
        units = ", ".join(cpu.get("bf16_units", [])) or "none (bfloat16 is emulated)"
        lines.append(f"CPU: {cpu.get('model')} ({cpu.get('cores')} cores); bfloat16 units: {units}")
    lines += [header, "-" * len(header)]
    for backend in results["backends"]:
        for row in backend.get("rows", []):
            lines.append(
                f"{row['backend']:<11}{row.get('path', ''):<12}{row['precision']:<16}"
                f"{row['batch_size']:>6}{row['matmul_gflops']:>12.1f}{row['train_images_per_s']:>9.1f}"
                f"{row.get('compiled_images_per_s', float('nan')):>11.1f}"
                f"{100 * row.get('host_share', float('nan')):>7.1f}"
                f"{row['train_efficiency']:>10.3f}{row.get('epoch_seconds', float('nan')):>9.2f}"
                f"{row.get('ideal_epoch_seconds', float('nan')):>9.2f}"
                f"{row.get('epoch_efficiency', float('nan')):>10.3f}"
            )
        for name, ratio in backend.get("precision_speedups", {}).items():
            lines.append(f"{backend['backend']}: training images/s {name}: {ratio:.2f}x")
        if "input_pipeline_images_per_s" in backend:
            lines.append(f"{backend['backend']}: input pipeline alone "
                         f"{backend['input_pipeline_images_per_s']:.0f} images/s")
    for name, value in results.get("orchestration", {}).items():
        lines.append(f"{name}: {'not measured' if value is None else f'{value:.2f}'}")
    if results.get("preprocess_seconds") is not None:
        lines.append(f"preprocess (all images of {results['preprocess_archive']}): "
                     f"{results['preprocess_seconds']:.2f} s")
    return "\n".join(lines)
