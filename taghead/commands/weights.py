"""``taghead weights``: list the published backbone weights, and download them into the local caches."""

from __future__ import annotations

import argparse

__all__ = ["register", "run_list", "run_download"]

DESCRIPTION = """\
Published backbone weights, by tag (NAME.TAG, as create_backbone, wrap_backbone(pretrained_backbone=...) and
--pretrained-backbone take them), and Hugging Face Hub repositories of Hugging Face Transformers video models (hf-hub:REPO). `list` shows them with their dataset, classes, clip, licence and whether the
file is in the local cache; `download` puts files into the ordinary caches (torch.hub's $TORCH_HOME/hub/checkpoints
for URL weights, the Hugging Face cache for Hub weights), for example on a login node, so that compute nodes
without network find them.
"""

EPILOG = """examples:
  taghead weights list                                  (every registered backbone's tags)
  taghead weights list 'taghead/*'                      (a shell pattern on NAME.TAG)
  taghead weights list 'timm/resnet18*'                 (timm's tags are listed for timm/ patterns)
  taghead weights download taghead/r2plus1d_34          (the default tag: IG-65M, 32-frame clips)
  taghead weights download torchvision/r2plus1d_18.kinetics400_v1 pytorchvideo/slowfast_r50.kinetics400
  taghead weights download transformers/videomae.base hf-hub:MCG-NJU/videomae-base-finetuned-kinetics
                                                        (a repository: config, weights, preprocessor config)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ._args import add_command_parser

    parser = add_command_parser(subparsers, "weights", help="list and download published backbone weights",
                                description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    listing = sub.add_parser("list", help="the published weights (NAME.TAG), with licence and cache status")
    listing.add_argument("pattern", nargs="?", default=None, help="shell pattern on NAME.TAG (e.g. 'torchvision/*')")
    listing.add_argument("--markdown", action="store_true", help="print the Markdown table of the documentation")
    listing.set_defaults(func=run_list)
    download = sub.add_parser("download", help="download weights into the local caches (NAME: its default tag)")
    download.add_argument("names", nargs="+", metavar="NAME[.TAG]",
                          help="backbone weights, e.g. taghead/r2plus1d_34, or a Hub repository hf-hub:OWNER/REPO")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")
    download.set_defaults(func=run_download)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_list(args: argparse.Namespace) -> int:
    from ._args import run_reporting_errors

    return run_reporting_errors("weights list", _list, args)


def _list(args: argparse.Namespace) -> int:
    from ..backbones.registry import backbone_weights_table, get_backbone_weights, list_backbones
    from ..backbones.weights import cached_weights_file

    names = list_backbones(args.pattern, pretrained=True)
    if not names:
        hint = " (timm's tags: a pattern starting with timm/, e.g. 'timm/resnet50*')" if args.pattern else ""
        raise ValueError(f"no published backbone weights match {args.pattern!r}{hint}")
    if args.markdown:
        print(backbone_weights_table(args.pattern))
        return 0
    rows = [("NAME.TAG", "DATASET", "CLASSES", "CLIP", "LICENCE", "CACHED")]
    for name in names:
        weights = get_backbone_weights(name)
        dc = weights.data_config
        rows.append((name, weights.dataset or "-", str(weights.num_classes), f"{dc.num_frames}x{dc.crop_size}",
                     weights.license or "-", "yes" if cached_weights_file(weights) is not None else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if not (args.pattern or "").startswith("timm/"):
        print("\nevery timm model's tags too: taghead weights list 'timm/<pattern>'")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ._args import run_reporting_errors

    return run_reporting_errors("weights download", _download, args)


def _download(args: argparse.Namespace) -> int:
    from ..backbones.registry import download_backbone_weights, get_backbone_weights
    from ..backbones.transformers_hub import HUB_PREFIX, parse_hub_id

    labels = []
    for name in args.names:  # every name is checked before anything is downloaded
        if name.startswith(HUB_PREFIX):
            parse_hub_id(name)
            labels.append(name)
        else:
            labels.append(get_backbone_weights(name).name)
    for name, label in zip(args.names, labels):
        path = download_backbone_weights(name, progress=not args.no_progress)
        print(f"{label}: {path}")
    return 0
