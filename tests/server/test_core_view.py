"""What the control plane tells the core about a stored job: only the service keeper's replicas
are off the LAS ladder (docs/policies.md), whatever kind a member gives its own job."""

from __future__ import annotations

from wanka.models import parse_job_spec
from wanka.models.service import ServiceSpec
from wanka.server.loop import core_job


def test_a_members_inference_job_stays_on_the_las_ladder_and_a_services_replica_does_not():
    # as the API stores a member's submission: validated, dumped; a spec has no field that marks
    # a replica (an unknown field is refused), so only the jobs row's service_id can
    member = parse_job_spec({"kind": "inference", "task_groups": [{"cards": 1}]}).model_dump(mode="json")
    job = core_job(7, member, "default", 0.0)
    job.attained_service = 1e9
    assert job.on_las_ladder and job.las_service == 1e9
    service = ServiceSpec.model_validate({"name": "chat", "command": ["serve"], "cards": 1})
    replica = core_job(
        8, service.replica_job(preemptible=True, generation=1).model_dump(mode="json"), "default", 0.0, 3
    )
    replica.attained_service = 1e9
    assert not replica.on_las_ladder and replica.las_service == 0.0 and replica.service == "3"
