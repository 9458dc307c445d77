"""Pydantic models shared by the API, the SDK and the CLI; they validate specs and build core objects.

Unknown fields are rejected, and every error names the field and what would be accepted.
"""

from wanka.models.cluster import ClusterSpec, load_cluster, parse_cluster, preset_names
from wanka.models.errors import SpecError
from wanka.models.hardware import default_catalog, load_catalog
from wanka.models.job import JobSpec, load_job_spec, parse_job_spec
from wanka.models.quota import QueueTreeSpec, load_queue_tree, parse_queue_tree

__all__ = [
    "ClusterSpec",
    "JobSpec",
    "QueueTreeSpec",
    "SpecError",
    "default_catalog",
    "load_catalog",
    "load_cluster",
    "load_job_spec",
    "load_queue_tree",
    "parse_cluster",
    "parse_job_spec",
    "parse_queue_tree",
    "preset_names",
]
