"""``taghead eval MODEL``: Top-1, Top-5 and mean class accuracy, a confusion-matrix PNG and a per-class CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]

DESCRIPTION = """\
Evaluate a saved model (save_pretrained folder, Hub repo id, training output folder or training checkpoint) on
a labelled set. The class count is the model's; a --csv split may lack classes (its ClassEncoded labels must
lie in [0, num_classes)). Mean class accuracy is the mean of the per-class accuracies over the classes present
in the set. Writes metrics.json, per_class.csv and confusion_matrix.png to --output (a folder holding an earlier
report is refused unless --overwrite). Works under torchrun (each process evaluates a shard; counts are summed).
"""

EPILOG = """examples:
  taghead eval runs/gym99 --csv gym99_val.csv --video-dir videos/          (a training output folder)
  taghead eval my-model/ --dir videos/val/                                  (a save_pretrained folder)
  taghead eval runs/tiny/checkpoint_last.pt --data synthetic --samples 300  (a training checkpoint)
"""


#: The files a report consists of (an earlier report in the output folder is refused unless ``--overwrite``).
REPORT_FILES = ("metrics.json", "per_class.csv", "confusion_matrix.png")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..engine.builders import add_data_arguments
    from ._args import add_command_parser, add_run_arguments

    parser = add_command_parser(
        subparsers, "eval", help="evaluate a model: Top-1, Top-5, MCA, confusion matrix, per-class accuracy",
        description=DESCRIPTION, epilog=EPILOG,
    )
    parser.add_argument("model", help="saved model folder, training output folder, checkpoint file or Hub repo id")
    add_data_arguments(parser, train=False)
    add_run_arguments(parser, batch_size_help="clips per process and batch (default 8)")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for the reports (default: eval/ inside a model folder, else ./eval)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier report in --output (by default a folder holding one is refused, "
                             "before anything is evaluated)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ._args import run_reporting_errors

    return run_reporting_errors("eval", _run, args)


def write_per_class_csv(path: Path, class_names: list[str], confusion) -> Path:
    """``class_index, class_name, support, correct, accuracy`` per class (accuracy empty when absent).

    Class names that a spreadsheet would run as formulas (``=HYPERLINK(...)``) are written as text
    (:func:`taghead.utils.escape.spreadsheet_cell`).
    """
    import csv
    import math

    from ..engine.metrics import per_class_accuracy
    from ..utils.escape import spreadsheet_cell
    from ..weights import atomic_output

    acc = per_class_accuracy(confusion)
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class_index", "class_name", "support", "correct", "accuracy"])
        for i, name in enumerate(class_names):
            a = float(acc[i])
            writer.writerow([i, spreadsheet_cell(name), int(confusion[i].sum()), int(confusion[i, i]),
                             "" if math.isnan(a) else f"{a:.6f}"])
    return path


def _run(args: argparse.Namespace) -> int:

    from ..engine.builders import build_eval_dataset
    from ..engine.distributed import cleanup_distributed, init_distributed
    from ..engine.plots import plot_confusion_matrix
    from ..engine.predict import load_model_with_source
    from ..engine.trainer import evaluate
    from ..utils.escape import terminal_text
    from ..weights import atomic_write_json, check_output_folder

    model_path = Path(args.model)
    out = check_output_folder(args.output or (model_path / "eval" if model_path.is_dir() else Path("eval")), "--output")
    earlier = [name for name in REPORT_FILES if (out / name).exists()]
    if earlier and not args.overwrite:
        raise FileExistsError(f"{str(out)!r} already holds an evaluation report ({', '.join(earlier)}); nothing was "
                              "evaluated. Choose another --output, or pass --overwrite to replace it")
    ctx = init_distributed(args.device)
    try:
        loaded = load_model_with_source(args.model, device=ctx.device)
        model = loaded.model
        if ctx.is_main:
            print(terminal_text(loaded.line()))
        names = list(model.label_names) if getattr(model, "label_names", None) else None
        n = model.num_classes
        dataset = build_eval_dataset(args, model.data_config, names, progress=ctx.is_main and not args.no_progress,
                                     num_classes=n)
        class_names = names or list(getattr(dataset, "class_names", [str(i) for i in range(n)]))
        metrics, meter = evaluate(model, dataset, num_classes=n, ctx=ctx, batch_size=args.batch_size,
                                  workers=args.workers, amp=args.amp, progress=not args.no_progress, desc="eval")
        if not ctx.is_main:
            return 0
        out.mkdir(parents=True, exist_ok=True)
        present = int((meter.confusion.sum(1) > 0).sum())
        trivial = " (trivial: 5 >= number of classes)" if n <= 5 else ""
        print(f"{metrics['count']} clips, {present} of {n} classes present")
        print(f"Top-1 {100 * metrics['top1']:.2f}%   Top-5 {100 * metrics['top5']:.2f}%{trivial}   "
              f"MCA {100 * metrics['mca']:.2f}%   loss {metrics['loss']:.4f}")
        report = dict(metrics, num_classes=n, classes_present=present, model=str(args.model), weights=loaded.source,
                      weights_description=loaded.description)
        # The figure first: it is the one that can fail on odd input; then the two text files.
        plot_confusion_matrix(meter.confusion, class_names, out / "confusion_matrix.png",
                              title=f"{model_path.name}: Top-1 {100 * metrics['top1']:.1f}%, MCA {100 * metrics['mca']:.1f}%")
        write_per_class_csv(out / "per_class.csv", class_names, meter.confusion)
        atomic_write_json(out / "metrics.json", report)
        print(terminal_text(f"wrote {out / 'metrics.json'}, {out / 'per_class.csv'}, {out / 'confusion_matrix.png'}"))
    finally:
        cleanup_distributed(ctx)
    return 0
