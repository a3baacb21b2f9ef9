"""learner/: the sequence model, the not-to-recommend loss and the Lightning learner."""
