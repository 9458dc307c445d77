"""The submit form's fields to a job spec and back, and API errors named by the form's field."""

from __future__ import annotations

import pytest

from wanka.server.console.forms import FormError, fields_of, problems_of, spec_of

FORM = {"name": "n", "tasks": "2", "cards": "1", "restarts": "1", "command": "python\n-c\nprint(1)"}


def test_a_form_becomes_the_spec_and_the_spec_fills_the_form_again():
    spec = spec_of({**FORM, "env": "A=1\nB=x=y", "time_limit": "90", "model": "ascend-910c"})
    assert spec.command == ["python", "-c", "print(1)"] and spec.env == {"A": "1", "B": "x=y"}
    assert (spec.task_groups[0].replicas, spec.time_limit_s, spec.restart.max) == (2, 90.0, 1)
    fields, note = fields_of(spec.model_dump(mode="json"))
    assert spec_of(fields) == spec and note == ""


@pytest.mark.parametrize(
    "change, field",
    [
        ({"tasks": "x"}, "tasks"),
        ({"cards": "65"}, "cards"),
        ({"env": "NOPE"}, "env"),
        ({"time_limit": "soon"}, "time_limit"),
    ],
)
def test_each_bad_field_is_named(change, field):
    with pytest.raises(FormError) as err:
        spec_of({**FORM, **change})
    assert field in [f for f, _ in err.value.problems]


def test_an_admin_names_the_tenant_and_a_too_long_job_is_blamed_on_its_time_limit():
    # newcomer review: "tenant: no tenant 'default'" for a field nobody typed; a time limit over the
    # queue's maximum was filed under cards
    with pytest.raises(FormError) as err:
        spec_of(FORM, admin=True)
    assert err.value.problems == [("tenant", "an admin names the tenant the job runs for")]
    assert spec_of({**FORM, "tenant": "lab-a"}, admin=True).tenant == "lab-a"
    limit = "task_groups: can never run here: time limit 7200 s exceeds the maximum of queue 'dev', 3600 s"
    assert problems_of(limit)[0][0] == "time_limit"
    assert problems_of("task_groups: can never run here: the largest node has 4 cards")[0][0] == "cards"
    assert problems_of([{"field": "task_groups[*].replicas", "message": "too many"}]) == [
        ("tasks", "too many")
    ]
