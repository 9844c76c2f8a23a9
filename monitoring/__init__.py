"""Operations for hgq: Prometheus metrics (metrics, multiproc, celery_hooks), JSON logs (logging),
Flower (flower), `hgq status` (status). Deployment files:
prometheus.yml, grafana/, k8s/."""
