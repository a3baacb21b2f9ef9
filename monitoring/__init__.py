"""monitoring/: metric catalogue, Prometheus rules and Grafana dashboards.

- ``catalogue``: every exported metric as data (``catalogue.md`` is generated from it)
- ``rules``: recording and alert rules (``rules/*.yml``, tested in ``rules/tests/``)
- ``dashboards``: Grafana dashboards (``dashboards/*.json``)
- ``scrape``: ``prometheus.yml`` adapted to given targets; ``expressions``: every query
- ``report``: ``recoil report`` (PNG plots from ``query_range``)
- ``kubernetes``: PrometheusRule and dashboard ConfigMap for ``deploy/k8s/monitoring``
- ``synthetic``: an exporter of sample values for every catalogued metric

Regenerate the committed files after a change:
``python -m monitoring.catalogue && python -m monitoring.rules &&
python -m monitoring.dashboards && python -m monitoring.kubernetes``.
"""
