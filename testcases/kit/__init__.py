"""The test author's room: everything a procedure in ``testcases/`` uses, in the pack's terms.

- :mod:`~testcases.kit.pack`: the ``pack`` fixture's class: the manual's actions
  (:class:`rig.pack.Pack`), ``pack.drive(quantity, value)`` and ``pack.reports``;
- :mod:`~testcases.kit.stimulus`: how ``drive`` brings a protected quantity to a value, through
  the bench's :class:`~instruments.roles.FaultInsertion` unit or its instruments;
- :mod:`~testcases.kit.reports`: the pack's CAN reports: one report's levels, bits and limits,
  and waits on them;
- :mod:`~testcases.kit.rules`: the spec's rules, written once: the suite's oracle;
- :mod:`~testcases.kit.checks`: recorded checks several procedures share (a report against the
  rules, lights, relays, powered off), on :mod:`rig.measure`'s measurements;
- :mod:`~testcases.kit.observe`: what the rig watches (lights around a press, frames since a
  mark, CAN periods, SOC lights).

It lives in ``testcases/``, above the rig and the emulator: nothing below can import it, so the
oracle cannot be shared with the BMS model it judges.
"""
