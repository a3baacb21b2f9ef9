"""The contract every part of recoil shares: events, records, labels, windows, topic
names, Kafka settings, configuration errors and child processes.

It imports no stage (streams, learner, simulator, serving, monitoring) and no app code
(``recoil.cli``, ``recoil.commands``, ``recoil.loop``); import-linter checks this in
``make lint`` (``.importlinter``). docs/architecture.md draws the whole house.
"""
