"""The run-scoped cache of symai's compiled prompt templates (symbatcher.templates).

What must hold: the prompts are the very text symai renders without the cache, for every
variable the system template reads and from many threads at once; each template source is
compiled once while the cache is on; and symai's method is back after the last run, also
after an exception, without touching a replacement someone else put there.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from typing import Any

import jinja2
import pytest
from symai import Expression, Symbol
from symai.backend.engines.neurosymbolic._prompts import prompt_registry

from symbatcher import BatchScheduler
from symbatcher import templates as tpl
from symbatcher.checks import env_flag
from symbatcher.templates import cached_templates
from symbatcher.testing.server import LocalServer

ENV = prompt_registry.jinja_env
SYSTEM = prompt_registry.template("system")


def variables(rng: random.Random, tag: str) -> dict[str, Any]:
    """A random mix of everything the chat system template reads."""
    return {
        "suppress_verbose_output": rng.random() < 0.5,
        "response_format_type": rng.choice([None, "json_object", "text"]),
        "static_context": rng.choice(["", f"static {tag}"]),
        "dynamic_context": rng.choice(["", f"dynamic {tag}"]),
        "payload": rng.choice([None, f"payload {tag}"]),
        "examples": rng.choice([None, f"example {tag}"]),
        "prompt": f"instruction {tag}",
        "template_suffix": rng.choice([None, f"suffix {tag}"]),
    }


def cached() -> bool:
    return isinstance(vars(ENV).get("from_string"), tpl.CachedFromString)


def test_cached_renders_are_the_text_symai_renders() -> None:
    rng = random.Random(7)
    cases = [variables(rng, str(i)) for i in range(40)]
    expected = [prompt_registry.render("system", **case) for case in cases]
    with cached_templates():
        assert cached()
        assert ENV.from_string(SYSTEM) is ENV.from_string(SYSTEM)  # compiled once
        got = [prompt_registry.render("system", **case) for case in cases]
    assert got == expected
    assert len(set(expected)) > 20  # the cases do render differently


def test_symai_method_is_back_after_the_last_user_and_after_an_error() -> None:
    assert not cached()
    with cached_templates():
        with cached_templates():
            assert cached()
        assert cached()  # the outer user is still active
    assert "from_string" not in vars(ENV)
    with pytest.raises(RuntimeError, match="boom"), cached_templates():
        raise RuntimeError("boom")
    assert "from_string" not in vars(ENV)
    assert ENV.from_string(SYSTEM) is not ENV.from_string(SYSTEM)  # compiles again


def test_many_threads_render_their_own_prompts() -> None:
    rng = random.Random(11)
    cases = [variables(rng, f"thread-{i}") for i in range(64)]
    expected = [prompt_registry.render("system", **case) for case in cases]
    got: list[list[str]] = [[] for _ in cases]  # every render, checked in the main thread
    start = threading.Barrier(len(cases))

    def render(i: int) -> None:
        start.wait()
        for _ in range(20):
            got[i].append(prompt_registry.render("system", **cases[i]))

    with cached_templates():
        threads = [threading.Thread(target=render, args=(i,)) for i in range(len(cases))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert got == [[text] * 20 for text in expected]


def test_own_globals_and_template_classes_go_to_jinja_unchanged() -> None:
    with cached_templates():
        plain = ENV.from_string("{{ x }}")
        with_globals = ENV.from_string("{{ x }}", globals={"x": "g"})
        assert with_globals is not plain
        assert with_globals.render() == "g"
        assert ENV.from_string("{{ x }}", template_class=jinja2.Template) is not plain


def test_the_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tpl, "MAX_TEMPLATES", 8)
    with cached_templates():
        wrapper = vars(ENV)["from_string"]
        for i in range(30):
            assert ENV.from_string(f"n={{{{ n }}}} {i}").render(n=i) == f"n={i} {i}"
            assert len(wrapper.compiled) <= 8


def test_a_replacement_made_during_a_run_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    def theirs(source: Any, globals: Any = None, template_class: Any = None) -> Any:
        return jinja2.Environment.from_string(ENV, source, globals, template_class)

    try:
        with caplog.at_level(logging.WARNING, logger="symbatcher"), cached_templates():
            ENV.from_string = theirs  # type: ignore[method-assign]
        assert vars(ENV)["from_string"] is theirs
        assert "replaced during a run" in caplog.text
        with cached_templates():  # someone else's method: not wrapped, not removed
            assert vars(ENV)["from_string"] is theirs
        assert vars(ENV)["from_string"] is theirs
    finally:
        del ENV.from_string


@pytest.mark.parametrize(
    ("value", "on"),
    [(None, True), ("1", True), ("yes", True), ("0", False), ("False", False), (" off ", False)],
)
def test_the_environment_can_turn_it_off(value: str | None, on: bool) -> None:
    environ = {} if value is None else {tpl.ENV_NAME: value}
    assert env_flag(tpl.ENV_NAME, environ) is on
    # what the caller sets wins over the environment, both ways
    assert env_flag(tpl.ENV_NAME, environ, given=True) is True
    assert env_flag(tpl.ENV_NAME, environ, given=False) is False


# ---------------------------------------------------------------- full runs
class InContext(Symbol):  # type: ignore[misc]
    """A symbol whose static context names its own value: every item's system prompt
    differs, so a prompt crossing items would show."""

    @property
    def static_context(self) -> str:
        return f"context of {self.value}"


class Ask(Expression):  # type: ignore[misc]
    def forward(self, input: Any, **kwargs: Any) -> Any:
        first = InContext(input).query("Describe")
        return InContext(f"{input} | {str(first)[-20:]}").query("Summarize")


def system_prompts(
    mocker: Any, engine: Any, scheduler: BatchScheduler, items: list[str]
) -> tuple[dict[str, str], int, list[str]]:
    """Run ``Ask`` over the items; return each request's system prompt by user prompt,
    how often Jinja compiled the system template, and the answers."""
    built = mocker.spy(engine, "build_request")
    compiled = mocker.spy(jinja2.Environment, "from_string")
    results = scheduler(expr=Ask, dataset=items, num_workers=8, batch_size=4)
    assert results.stats.failed == 0
    prompts = {}
    for call in built.call_args_list:
        system, user = call.args[0].prop.prepared_input
        prompts[user["content"]] = system["content"]
    compiles = sum(1 for call in compiled.call_args_list if call.args[1] == SYSTEM)
    mocker.stop(built)
    mocker.stop(compiled)
    return prompts, compiles, [str(r) for r in results]


def test_a_run_through_symai_vllm_engine_sends_the_same_prompts(
    local_server: LocalServer, local_vllm: Any, mocker: Any
) -> None:
    items = [f"item-{i}" for i in range(24)]
    on, compiles_on, answers_on = system_prompts(mocker, local_vllm, BatchScheduler(), items)
    assert "from_string" not in vars(ENV)  # put back after the run
    off, compiles_off, answers_off = system_prompts(
        mocker, local_vllm, BatchScheduler(cache_templates=False), items
    )
    assert answers_on == answers_off
    assert on == off and len(on) == 2 * len(items)
    for user, system in on.items():  # each request carries its own item's context
        item = re.search(r"item-\d+", user)
        assert item is not None and f"<static>\ncontext of {item.group()}" in system
    assert compiles_on == 1
    assert compiles_off == 2 * len(items)
