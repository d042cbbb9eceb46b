"""A local Hugging Face cache as huggingface_hub lays it out, for the offline hub-id paths."""

from pathlib import Path


def hub_snapshot(cache: Path, repo: str) -> Path:
    """The folder of `repo`'s main snapshot in the cache at `cache`: what is written there is what the cache
    holds for it."""
    revision = "0" * 40
    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(revision)
    return entry / "snapshots" / revision
