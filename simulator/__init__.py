"""simulator/: a synthetic world, simulated users and counterfactual responsiveness probes."""
