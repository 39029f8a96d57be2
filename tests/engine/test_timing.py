"""engine.timing: the phases of a step add up to its wall time, and a step reports them."""

from __future__ import annotations

import threading
import time

import apsw
import pytest

from engine import MemGPTAgent, Persona, timing
from engine.llm.scripted import ScriptedClient, call
from engine.types import AgentResponse, ContextUsage, StepTimings

PERSONA = Persona(name="Sam", description="A helpful assistant")
ENGINE_PHASES = ("context", "parse", "dispatch", "store", "database")


def spin(seconds: float) -> None:
    """Busy-wait (sleep can overshoot by a scheduler tick on a loaded machine)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def assert_adds_up(t: StepTimings) -> None:
    assert t.wall_s > 0
    assert all(seconds >= 0 for seconds in t.phases.values()), t.phases
    assert sum(t.phases.values()) == pytest.approx(t.wall_s, rel=1e-9, abs=1e-9)
    assert sum(s for _, s in t.rows()) == pytest.approx(t.wall_s, rel=1e-9, abs=1e-9)
    assert t.model_s + t.engine_s == pytest.approx(t.wall_s, rel=1e-9, abs=1e-9)


# -- the accumulator --------------------------------------------------------------------------
def test_nested_phases_count_their_own_time_only() -> None:
    with timing.measure() as timer:
        with timing.phase("outer"):
            spin(0.02)
            with timing.phase("inner"):
                spin(0.01)
        with timing.phase("inner"):
            spin(0.01)
        spin(0.005)
    t = timer.finish()
    assert_adds_up(t)
    assert t.seconds("outer") == pytest.approx(0.02, abs=0.008)
    assert t.seconds("inner") == pytest.approx(0.02, abs=0.008)
    assert t.seconds("other") >= 0.005
    assert [name for name, _ in t.rows()][-1] == "other"


def test_attribute_moves_time_out_of_the_running_phase() -> None:
    with timing.measure() as timer, timing.phase("model"):
        spin(0.03)
        timing.attribute("generation", 0.02)
    t = timer.finish()
    assert_adds_up(t)
    assert t.seconds("generation") == 0.02
    assert t.seconds("model") == pytest.approx(0.01, abs=0.008)


def test_no_measure_no_cost_and_no_state() -> None:
    assert timing.current() is None
    with timing.phase("x"):
        timing.attribute("y", 1.0)  # nothing measured: ignored
    assert timing.current() is None
    started = time.perf_counter()
    for _ in range(20_000):
        with timing.phase("x"):
            pass
    assert time.perf_counter() - started < 0.5  # ~0.3 us each; a generous bound


def test_a_measured_phase_costs_microseconds() -> None:
    with timing.measure() as timer:
        started = time.perf_counter()
        for _ in range(20_000):
            with timing.phase("x"):
                pass
        elapsed = time.perf_counter() - started
    assert elapsed / 20_000 < 25e-6  # ~1 us each here; a generous bound
    assert timer.finish().seconds("x") < elapsed


def test_timers_are_per_thread_and_nested_measures_share_the_outer_one() -> None:
    def elsewhere() -> None:
        assert timing.current() is None
        with timing.phase("elsewhere"):
            spin(0.01)

    with timing.measure() as timer:
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        with timing.measure() as inner:
            assert inner is timer
            with timing.phase("nested"):
                spin(0.001)
        assert timing.current() is timer
    assert timing.current() is None
    t = timer.finish()
    assert "elsewhere" not in t.phases and t.seconds("nested") > 0


def test_phases_close_when_an_exception_passes() -> None:
    with timing.measure() as timer:
        with pytest.raises(ValueError), timing.phase("failing"):
            spin(0.002)
            raise ValueError("boom")
        with timing.phase("after"):
            pass
    t = timer.finish()
    assert_adds_up(t)
    assert t.seconds("failing") > 0


def test_database_time_counts_statements_queries_and_commits(store) -> None:
    with timing.measure() as timer:
        with store.atomic() as conn:
            conn.execute("CREATE TABLE t(x)")
            conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(2000)])
        rows = store.query("SELECT sum(x) FROM t")
    t = timer.finish()
    assert rows == [(1999 * 2000 // 2,)]
    assert t.seconds("database") > 0
    assert_adds_up(t)
    # outside a step the cursor is a plain apsw cursor that counts nothing
    assert isinstance(store.conn.execute("SELECT 1"), apsw.Cursor)
    assert timing.current() is None


def test_a_failed_transaction_still_rolls_back(store) -> None:
    with timing.measure(), pytest.raises(RuntimeError), store.atomic() as conn:
        conn.execute("CREATE TABLE t(x)")
        raise RuntimeError("stop")
    assert store.query("SELECT name FROM sqlite_master WHERE name = 't'") == []


def test_responses_built_without_timings_keep_working() -> None:
    response = AgentResponse("hi", [], [], ContextUsage(10, 100))
    assert response.timings == StepTimings()
    assert response.timings.rows()[-1] == ("other", 0.0)
    assert response.timings.engine_s == 0.0


# -- a step -----------------------------------------------------------------------------------
def test_a_step_reports_its_phases(store) -> None:
    client = ScriptedClient(
        [
            call("archival_memory_insert", True, content="Ada drinks green tea."),
            call("archival_memory_search", True, query="tea"),
            call("send_message", message="Noted!"),
        ]
    )
    agent = MemGPTAgent(PERSONA, store, client, name="sam")
    started = time.perf_counter()
    result = agent.step("I'm Ada and I drink green tea.")
    elapsed = time.perf_counter() - started
    t = result.timings
    assert result.message == "Noted!"
    assert_adds_up(t)
    assert t.wall_s <= elapsed
    assert t.wall_s > 0.9 * elapsed - 0.002  # the step's wall time is what the caller waited
    for name in (*ENGINE_PHASES, "model", "embedding"):
        assert t.seconds(name) > 0, name
    assert t.seconds("database") > 0  # the step wrote messages and a passage
    # the scripted client has no llama.cpp counters
    assert t.seconds("prompt_eval") == t.seconds("generation") == 0
    assert t.model_s == pytest.approx(t.seconds("model") + t.seconds("embedding"))


def test_a_heartbeat_reports_its_phases(store) -> None:
    client = ScriptedClient([call("send_message", message="Still here.")])
    agent = MemGPTAgent(PERSONA, store, client, name="sam")
    result = agent.heartbeat()
    assert_adds_up(result.timings)
    assert result.timings.seconds("database") > 0


def test_each_step_has_its_own_timings(store) -> None:
    client = ScriptedClient(
        [call("send_message", message="one"), call("send_message", message="two")]
    )
    agent = MemGPTAgent(PERSONA, store, client, name="sam")
    first = agent.step("hello")
    spin(0.05)  # between steps: counted in neither
    second = agent.step("again")
    assert_adds_up(first.timings)
    assert_adds_up(second.timings)
    assert second.timings.wall_s < 0.05 + first.timings.wall_s * 5


@pytest.mark.slow
def test_a_real_step_splits_the_model_call(store, chat_client) -> None:
    agent = MemGPTAgent(PERSONA, store, chat_client, name="sam")
    result = agent.step("Hi, I'm Ada.")
    t = result.timings
    assert_adds_up(t)
    for name in ("prompt_eval", "generation", "model", "template", "tokenize", "stream"):
        assert t.seconds(name) > 0, name
    stats = chat_client.last_stats
    assert stats is not None
    assert t.seconds("generation") >= stats.eval_s  # every call of the step is in it
    assert t.model_s > t.engine_s
