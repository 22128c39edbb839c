"""``taghead eval MODEL``: Top-1, Top-5 and mean class accuracy, a confusion-matrix PNG and a per-class CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run"]

EPILOG = """examples:
  taghead eval runs/gym99 --csv gym99_val.csv --video-dir videos/          (a training output folder)
  taghead eval my-model/ --dir videos/val/                                  (a save_pretrained folder)
  taghead eval runs/tiny/checkpoint_last.pt --data synthetic --samples 300  (a training checkpoint)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..engine.builders import add_data_arguments
    from ..engine.trainer import AMP_MODES

    parser = subparsers.add_parser(
        "eval", help="evaluate a model: Top-1, Top-5, MCA, confusion matrix, per-class accuracy",
        description="Evaluate a saved model (save_pretrained folder, Hub repo id, training output folder or training "
                    "checkpoint) on a labelled set. Mean class accuracy is the mean of the per-class accuracies over "
                    "the classes present in the set. Writes metrics.json, per_class.csv and confusion_matrix.png to "
                    "--output. Works under torchrun (each process evaluates a shard; counts are summed).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="saved model folder, training output folder, checkpoint file or Hub repo id")
    add_data_arguments(parser, train=False)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--amp", choices=AMP_MODES, default="none")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for the reports (default: eval/ inside a model folder, else ./eval)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..weights import CheckpointError

    try:
        return _run(args)
    except (ValueError, TypeError, FileNotFoundError, CheckpointError) as err:
        print(f"taghead eval: error: {err}", file=sys.stderr)
        return 2


def write_per_class_csv(path: Path, class_names: list[str], confusion) -> Path:
    """``class_index, class_name, support, correct, accuracy`` per class (accuracy empty when absent)."""
    import csv
    import math

    from ..engine.metrics import per_class_accuracy

    acc = per_class_accuracy(confusion)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class_index", "class_name", "support", "correct", "accuracy"])
        for i, name in enumerate(class_names):
            a = float(acc[i])
            writer.writerow([i, name, int(confusion[i].sum()), int(confusion[i, i]), "" if math.isnan(a) else f"{a:.6f}"])
    return path


def _run(args: argparse.Namespace) -> int:
    import json

    from ..engine.builders import build_eval_dataset
    from ..engine.distributed import cleanup_distributed, init_distributed
    from ..engine.plots import plot_confusion_matrix
    from ..engine.predict import load_model
    from ..engine.trainer import evaluate

    ctx = init_distributed(args.device)
    try:
        model = load_model(args.model, device=ctx.device)
        names = list(model.label_names) if getattr(model, "label_names", None) else None
        dataset = build_eval_dataset(args, model.data_config, names, progress=ctx.is_main and not args.no_progress)
        n = model.num_classes
        if getattr(dataset, "num_classes", n) != n:
            raise ValueError(f"the evaluation set has {dataset.num_classes} classes, the model {n}")
        class_names = names or list(getattr(dataset, "class_names", [str(i) for i in range(n)]))
        metrics, meter = evaluate(model, dataset, num_classes=n, ctx=ctx, batch_size=args.batch_size,
                                  workers=args.workers, amp=args.amp, progress=not args.no_progress, desc="eval")
        if not ctx.is_main:
            return 0
        model_path = Path(args.model)
        out = args.output or (model_path / "eval" if model_path.is_dir() else Path("eval"))
        out.mkdir(parents=True, exist_ok=True)
        present = int((meter.confusion.sum(1) > 0).sum())
        trivial = " (trivial: 5 >= number of classes)" if n <= 5 else ""
        print(f"{metrics['count']} clips, {present} of {n} classes present")
        print(f"Top-1 {100 * metrics['top1']:.2f}%   Top-5 {100 * metrics['top5']:.2f}%{trivial}   "
              f"MCA {100 * metrics['mca']:.2f}%   loss {metrics['loss']:.4f}")
        report = dict(metrics, num_classes=n, classes_present=present, model=str(args.model))
        (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        write_per_class_csv(out / "per_class.csv", class_names, meter.confusion)
        plot_confusion_matrix(meter.confusion, class_names, out / "confusion_matrix.png",
                              title=f"{model_path.name}: Top-1 {100 * metrics['top1']:.1f}%, MCA {100 * metrics['mca']:.1f}%")
        print(f"wrote {out / 'metrics.json'}, {out / 'per_class.csv'}, {out / 'confusion_matrix.png'}")
    finally:
        cleanup_distributed(ctx)
    return 0
