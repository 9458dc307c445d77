from wanka.sim.engine import EventKind, EventQueue


def test_events_pop_by_time_then_kind_then_push_order():
    q = EventQueue()
    q.push(5.0, EventKind.CYCLE, "round")
    q.push(5.0, EventKind.ARRIVAL, "a1")
    q.push(1.0, EventKind.ARRIVAL, "a0")
    q.push(5.0, EventKind.FINISH, "f")
    q.push(5.0, EventKind.ARRIVAL, "a2")
    assert [q.pop()[2] for _ in range(len(q))] == ["a0", "f", "a1", "a2", "round"]
