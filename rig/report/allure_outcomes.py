"""The Allure side of a test's outcome: what an engineer reads first (a pytest plugin).

Loaded by :mod:`rig.pytest_plugin`; does nothing unless allure-pytest writes results
(``--alluredir``).

- **Readable titles.** A test is titled by its name in words, with its parameters
  (``Holds short of the threshold then trips in time · cell over voltage, L1``); a test that sets
  its own ``@allure.title`` keeps it. The docstring stays the description.
- **The requirement message first.** A failed test's message is what failed, one line per
  measurement (:class:`rig.measure.RequirementFailed`), or the error's own line and the stimulus
  the rig applied last; the traceback is an attachment ("traceback"), not the first thing on the page.
- **No fixture noise.** allure-pytest reports every fixture's set-up and tear-down as a step of
  its own (``bench``, ``bench::_finalizer`` ...). Those that passed and recorded nothing are
  left out; a fixture that failed, or recorded steps or attachments, stays.
"""
from __future__ import annotations

import pytest

from rig.measure import MEASUREMENTS, RequirementFailed
from rig.report.titles import test_title

try:
    import allure
    import allure_commons
    from allure_commons.model2 import Status
except ImportError:  # the report is optional
    allure = allure_commons = None


def title_of(item: pytest.Item) -> str:
    """The test's name in words, first letter capital, with its parameters' id in words."""
    return test_title(item.name)


def failure_message(excinfo: pytest.ExceptionInfo, stimulus: str | None = None) -> str:
    """The message a failed test shows first: a requirement failure's lines (each names its
    stimulus), else the exception's own line (type and text, notes included) and the stimulus
    the rig applied last."""
    if isinstance(excinfo.value, RequirementFailed):
        notes = getattr(excinfo.value, "__notes__", ())
        return "\n".join([str(excinfo.value), *notes])
    return excinfo.exconly().rstrip() + (f"\nafter: {stimulus}" if stimulus else "")


class _QuietFixtures:
    """An allure-commons plugin that drops the passed, empty fixture steps from each container
    before the file logger writes it (it runs first: ``tryfirst``)."""

    if allure_commons is not None:
        @allure_commons.hookimpl(tryfirst=True)
        def report_container(self, container):
            container.befores = [f for f in container.befores if _worth_showing(f)]
            container.afters = [f for f in container.afters if _worth_showing(f)]


def _worth_showing(fixture) -> bool:
    return fixture.status not in (None, Status.PASSED) or bool(fixture.steps) or bool(fixture.attachments)


#: the hook that keeps quiet fixtures out of the Allure report, while it is registered
QUIET_FIXTURES = pytest.StashKey["_QuietFixtures"]()


def _listener(config: pytest.Config):
    return config.pluginmanager.get_plugin("allure_listener") if allure is not None else None


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config  # allure-pytest registered its listener at configure time
    if _listener(config) is not None:
        config.stash[QUIET_FIXTURES] = _QuietFixtures()
        allure_commons.plugin_manager.register(config.stash[QUIET_FIXTURES])


def pytest_unconfigure(config: pytest.Config) -> None:
    quiet = config.stash.get(QUIET_FIXTURES, None)
    if quiet is not None:
        allure_commons.plugin_manager.unregister(quiet)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item):
    yield  # allure-pytest names the test at the end of set-up; the title goes over it
    function = getattr(item, "function", None)
    if _listener(item.config) is not None and not hasattr(function, "__allure_display_name__"):
        allure.dynamic.title(title_of(item))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    listener = _listener(item.config)
    result = listener.allure_logger.get_test(None) if listener is not None else None
    before = result.statusDetails if result is not None else None
    outcome = yield  # allure-pytest sets the status details in here
    report = outcome.get_result()
    if result is None or call.excinfo is None or not report.failed:
        return
    allure.attach(report.longreprtext, name=f"traceback ({report.when})",
                  attachment_type=allure.attachment_type.TEXT)
    # the test keeps its first failure's details; a later phase's failure only adds its traceback
    if result.statusDetails is not None and result.statusDetails is not before:
        measurements = item.stash.get(MEASUREMENTS, None)
        result.statusDetails.message = failure_message(call.excinfo, measurements and measurements.stimulus)
        result.statusDetails.trace = None
