"""The victim search's vector helpers do what the plain loops they replace did (issue 14's cycle
time: they run over every running job, 50,000 at 100k cards)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tests.core.test_properties import SETTINGS
from wanka.core.actions import _lexsort_then_ids
from wanka.core.quota import taken_in_order


def _taken_by_loop(cards: list[int], left: int) -> list[bool]:
    taken = []
    for c in cards:
        taken.append(c <= left)
        if c <= left:
            left -= c
    return taken


@given(
    cards=st.lists(st.sampled_from([0, 1, 2, 4, 8, 16, 64, 512, 2048]) | st.integers(0, 3000), max_size=60),
    left=st.integers(0, 6000),
)
@SETTINGS
def test_victims_are_taken_in_order_while_they_fit_in_what_a_side_borrows(cards, left) -> None:
    got = taken_in_order(np.array(cards, dtype=np.int64), left)
    assert got.tolist() == _taken_by_loop(cards, left)


def test_a_victim_too_large_is_passed_and_smaller_ones_after_it_still_taken() -> None:
    # borrowing 10: 4 and 4 fit, 8 does not (2 left), the 2 after it does, the 1 then does not
    assert taken_in_order(np.array([4, 4, 8, 2, 1]), 10).tolist() == [True, True, False, True, False]


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([0.0, 1.0, -2.5, float("nan")]),
            st.sampled_from([0.0, 3600.0, float("nan")]),
            st.booleans(),
            st.integers(-3, 3),
            st.text("abc", min_size=1, max_size=3),
        ),
        max_size=40,
    )
)
@SETTINGS
def test_the_victim_order_breaks_ties_by_job_id_as_one_full_lexsort(rows) -> None:
    n = len(rows)
    started = np.array([r[0] for r in rows], dtype=np.float64).reshape(n)
    lost = np.array([r[1] for r in rows], dtype=np.float64).reshape(n)
    not_borrowing = np.array([r[2] for r in rows], dtype=bool).reshape(n)
    rank = np.array([r[3] for r in rows], dtype=np.float64).reshape(n)
    ids = np.array([r[4] for r in rows]) if rows else np.zeros(0, dtype=str)
    keys = (started, lost, not_borrowing, rank)
    assert _lexsort_then_ids(keys, ids).tolist() == np.lexsort((ids, *keys)).tolist()
