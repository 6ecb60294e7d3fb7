"""The rig's side of an emulated bench: what the rig needs beyond the transports a real bench has.

- :mod:`~rig.emulator_client.remote_emulator`: ``packrig emulate`` in a child process, driven
  over its control port (the ``subprocess`` backend of :mod:`rig.backends`);
- :mod:`~rig.emulator_client.virtual_time_bus`: the rig's CAN bus in virtual time (cyclic frames
  in the emulator's time, arrivals announced).

Nothing here imports the emulator: the control port's vocabulary is :mod:`rig.protocol.control`.
"""
