"""streams/: Faust agents that turn interaction events into labelled sequence windows."""
