"""A Hugging Face Hub cache on disk, laid out as huggingface_hub lays it out, for offline loading by repo id."""

from __future__ import annotations

import hashlib
import os


def populate_hub_cache(cache: os.PathLike, repo_id: str, folder: os.PathLike, commit: str) -> None:
    """Lay out ``folder`` in ``cache`` exactly as huggingface_hub does: blobs, snapshots/<commit>, refs/main."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    os.makedirs(os.path.join(repo, "blobs"))
    os.makedirs(os.path.join(repo, "snapshots", commit))
    os.makedirs(os.path.join(repo, "refs"))
    for name in os.listdir(folder):
        data = open(os.path.join(folder, name), "rb").read()
        blob = hashlib.sha256(data).hexdigest()
        with open(os.path.join(repo, "blobs", blob), "wb") as f:
            f.write(data)
        os.symlink(os.path.join("..", "..", "blobs", blob), os.path.join(repo, "snapshots", commit, name))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit)
