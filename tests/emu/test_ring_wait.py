"""spin_until (emu/xen/ring.py): how both ends of the blkif ring wait a little for the
other before sleeping on the event channel - and give the core away between looks, so
that a peer sharing the core answers without waiting for the end of a time slice."""
from pvboot.emu.xen import ring


def _counting_yields(monkeypatch):
    yields = []
    monkeypatch.setattr(ring.os, "sched_yield", lambda: yields.append(len(yields)))
    return yields


def _answer_on(call_number):
    calls = []

    def poll():
        calls.append(None)
        return "answer" if len(calls) >= call_number else 0
    return poll, calls


def test_the_core_is_given_away_between_two_looks(monkeypatch):
    yields = _counting_yields(monkeypatch)
    poll, calls = _answer_on(5)
    assert ring.spin_until(poll, 60.0) == "answer"
    assert len(calls) == 5
    assert len(yields) == 4


def test_an_answer_at_the_first_look_gives_nothing_away(monkeypatch):
    yields = _counting_yields(monkeypatch)
    poll, _calls = _answer_on(1)
    assert ring.spin_until(poll, 60.0) == "answer"
    assert yields == []


def test_idle_work_goes_first_and_the_yields_start_when_it_is_done(monkeypatch):
    """blkback pumps its storage's read-ahead while it waits (the pump gives the core
    away itself when nothing has arrived); once the pump says it is done, the loop
    yields between looks."""
    yields = _counting_yields(monkeypatch)
    poll, calls = _answer_on(6)
    work = [True, True, False]
    pumped = []

    def idle():
        pumped.append(None)
        return work.pop(0)
    assert ring.spin_until(poll, 60.0, idle) == "answer"
    assert len(pumped) == 3              # not called again once it said it was done
    assert len(yields) == len(calls) - 1 - len(pumped) == 2


def test_a_missing_answer_ends_with_one_last_look(monkeypatch):
    _counting_yields(monkeypatch)
    poll, calls = _answer_on(10**9)
    assert ring.spin_until(poll, 0.0) == 0
    assert len(calls) == 1
