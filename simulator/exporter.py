"""The simulator's Prometheus metrics, created from monitoring's catalogue."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitoring.catalogue import SIMILARITIES, Part, create_part


class SimulatorMetrics:
    """Responsiveness per model version and arm, live A/B rates per arm, freshness."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = create_part(Part.SIMULATOR, registry)
        self.responsiveness = m.gauge("recoil_responsiveness_ratio")
        self.ci_lower = m.gauge("recoil_responsiveness_ci_lower_ratio")
        self.ci_upper = m.gauge("recoil_responsiveness_ci_upper_ratio")
        self.impressions = m.counter("recoil_sim_impressions_total")
        self.dislike_rate = m.gauge("recoil_sim_dislike_rate_ratio")
        self.repeat_dislike_rate = m.gauge("recoil_sim_repeat_dislike_creator_rate_ratio")
        self.arm_rate = m.gauge("recoil_sim_arm_rate_ratio")
        self.arm_rate_lower = m.gauge("recoil_sim_arm_rate_ci_lower_ratio")
        self.arm_rate_upper = m.gauge("recoil_sim_arm_rate_ci_upper_ratio")
        self.ab_change = m.gauge("recoil_sim_ab_change_ratio")
        self.ab_change_lower = m.gauge("recoil_sim_ab_change_ci_lower_ratio")
        self.ab_change_upper = m.gauge("recoil_sim_ab_change_ci_upper_ratio")
        self.ab_cuped = m.gauge("recoil_sim_ab_change_cuped_ratio")
        self.ab_cuped_lower = m.gauge("recoil_sim_ab_change_cuped_ci_lower_ratio")
        self.ab_cuped_upper = m.gauge("recoil_sim_ab_change_cuped_ci_upper_ratio")
        self.freshness_feature = m.histogram("recoil_freshness_feature_seconds")
        self.freshness_snapshot = m.histogram("recoil_freshness_snapshot_seconds")

    def drop_version(self, arm: str, version: str) -> None:
        """Stop exporting one model version's responsiveness series of ``arm``."""
        for similarity in SIMILARITIES:
            for gauge in (self.responsiveness, self.ci_lower, self.ci_upper):
                gauge.remove(similarity, version, arm)  # the catalogue's label order
