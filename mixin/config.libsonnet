// Everything a deployment is likely to change. Override any field from your own jsonnet:
//
//   (import 'mixin.libsonnet') + { _config+:: { jobSelector: 'job="wsw"' } }
{
  _config+:: {
    // Selects the exporter's scrape job in every alert and recording rule. The ServiceMonitor in
    // deploy/kubernetes/ names the job after its Service: workspacesweb-exporter.
    jobSelector: 'job="workspacesweb-exporter"',
    // Job name used in human-readable annotations.
    jobName: 'workspacesweb-exporter',

    // Extra matchers for the portal-level series (those with portal_id and the static labels) in
    // the alerts and recording rules, e.g. 'env="prod"' to alert on one environment only. Not
    // applied to `up` and the exporter's own series, which carry no static labels. Empty: none.
    portalSelector: '',

    // Static labels of the exporter's config (global.labels and portals[].labels). Each one becomes
    // a dashboard variable and a filter of every portal-level panel.
    staticLabels: ['env'],

    // Where each alert's runbook_url points: %s is the alert name, lowercased (the anchor of its
    // section in docs/runbook.md). Point it at your own copy (a wiki, an internal Git host, or a
    // release tag instead of main) to keep runbooks next to your other ones.
    runbookURLPattern: 'https://github.com/workspacesweb-exporter/workspacesweb-exporter/blob/main/docs/runbook.md#%s',

    // The labels every portal alert carries besides portal_id, joined from
    // workspacesweb_portal_info: its name, region and AWS account (account_id, or the account of
    // portal_arn for exporters that do not expose account_id yet). A portal without portal_info
    // (GetPortal denied, or not called yet) is named by its id and has no region or account.
    portalAlertLabels: ['display_name', 'region', 'account_id'],

    // Alert thresholds and how long a condition must hold before the alert fires.
    exporterDownFor: '5m',
    exporterAbsentFor: '15m',
    pollFailingFor: '10m',
    // AccessDenied on anything but GetPortal: denials in a window of this length...
    accessDeniedWindow: '10m',
    // ...without a gap, for this long (a single denial clears before then).
    accessDeniedFor: '15m',
    // GetPortal denied (a supported setup, retried every 10 minutes): info only. The window spans
    // two retries, so a single denial (e.g. while a policy change propagates) does not fire.
    getPortalDeniedWindow: '25m',
    getPortalDeniedFor: '30m',
    throttledRatio: 0.10,
    throttledWindow: '10m',
    throttledFor: '15m',
    stateWriteErrorsWindow: '15m',
    stateWriteErrorsFor: '15m',
    nearCapacityRatio: 0.80,
    nearCapacityFor: '10m',
    atCapacityRatio: 0.95,
    atCapacityFor: '5m',
    capacityReachedWindow: '15m',
    capacityReachedFor: '1m',
    timeAtCapacityRatio: 0.10,
    timeAtCapacityFor: '5m',
    droppedToZeroMinSessions: 5,
    droppedToZeroFor: '10m',

    // Business hours of the drop-to-zero alert, in UTC: hours [start, end) on days [firstDay,
    // lastDay] (0 = Sunday). Shift them for your time zone (e.g. 7..17 for CET in winter).
    businessHours: { start: 8, end: 18, firstDay: 1, lastDay: 5 },

    // Evaluation intervals of the recording rule groups.
    dailyRulesInterval: '5m',
    ratioRulesInterval: '1m',

    // The Grafana dashboard.
    dashboardUID: 'workspacesweb-exporter',
    dashboardTitle: 'WorkSpaces Secure Browser',
    dashboardTimezone: 'utc',
    dashboardRefresh: '1m',
    dashboardTags: ['aws', 'workspaces-web', 'workspacesweb-exporter'],

    // "Estimated month-to-date cost": monthly active users times this price per user and month,
    // in dashboardCurrencyUnit (a Grafana unit). null (the default) leaves the panel out. Take the
    // price from the AWS pricing page for your region; AWS bills by its own count of users.
    monthlyActiveUserPrice: null,
    dashboardCurrencyUnit: 'currencyUSD',
  },
}
