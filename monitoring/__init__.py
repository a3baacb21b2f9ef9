"""monitoring/: metric catalogue, Prometheus rules and Grafana dashboards."""
