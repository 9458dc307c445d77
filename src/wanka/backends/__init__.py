"""Where jobs really run: ``local`` (processes on this machine), ``slurm`` (a real Slurm cluster),
``kubernetes`` (pods of a real Kubernetes cluster)."""

from __future__ import annotations

from pathlib import Path

from wanka.backends.base import Backend

NAMES = ("local", "slurm", "kubernetes")


def make_backend(name: str, home: Path, **options) -> Backend:
    """The backend called ``name``; options are the backend's own (e.g. ``virtual_cards``)."""
    if name == "local":
        from wanka.backends.local import LocalBackend

        return LocalBackend(home, **options)
    if name == "slurm":
        from wanka.backends.slurm import SlurmBackend

        return SlurmBackend(home, **options)
    if name == "kubernetes":
        from wanka.backends.k8s import KubernetesBackend

        return KubernetesBackend(home, **options)
    raise ValueError(f"backend: unknown backend {name!r}; choose one of {', '.join(NAMES)}")
