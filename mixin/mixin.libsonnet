// The workspacesweb-exporter monitoring mixin: alerts, recording rules and a Grafana dashboard.
// Configuration is in config.libsonnet; generate.sh renders the files shipped under deploy/.
(import 'config.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
