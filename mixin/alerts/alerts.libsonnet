// Alerting rules. Each alert's runbook is the section of docs/runbook.md named after it.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local sel(metric, more=[]) = utils.selector(c, metric, more),
    local own(metric) = utils.selector(c, metric, portal=false),
    local alert(name, severity, expr, forDuration, summary, description) = {
      alert: name,
      expr: expr,
      'for': forDuration,
      labels: { severity: severity },
      annotations: {
        summary: summary,
        description: description,
        runbook_url: '%s#%s' % [c.runbookURLBase, std.asciiLower(name)],
      },
    },
    // Capacity in use where the portal reports a limit (portals with none, or 0, are left out).
    local capacityRatio =
      '%s\n  / (%s > 0)' % [sel('workspacesweb_active_sessions'), sel('workspacesweb_portal_max_concurrent_sessions')],
    // Where a denial happened: a portal, or discovery in a region (its series have no portal_id).
    local where = '{{ with $labels.portal_id }}portal {{ . }}{{ else }}discovery in {{ $labels.region }}{{ end }}',

    groups+: [
      {
        name: 'workspacesweb-exporter',
        rules: [
          alert(
            'WorkspacesWebExporterDown', 'critical',
            '%s == 0' % own('up'),
            c.exporterDownFor,
            '%s {{ $labels.instance }} is down' % c.jobName,
            'Prometheus has failed to scrape {{ $labels.instance }} for %s; WorkSpaces Secure Browser sessions are not monitored.' % utils.human(c.exporterDownFor),
          ),
          alert(
            'WorkspacesWebExporterAbsent', 'warning',
            'absent(%s)' % own('up'),
            c.exporterAbsentFor,
            'No %s target is scraped' % c.jobName,
            'Prometheus has had no target for job %s for %s.' % [c.jobName, utils.human(c.exporterAbsentFor)],
          ),
          alert(
            'WorkspacesWebPortalPollFailing', 'warning',
            '%s == 0' % sel('workspacesweb_up'),
            c.pollFailingFor,
            'Polling WorkSpaces Secure Browser portal {{ $labels.portal_id }} fails',
            'The polls of portal {{ $labels.portal_id }} by {{ $labels.instance }} have failed for %s. See workspacesweb_api_request_errors_total and the exporter\'s log.' % utils.human(c.pollFailingFor),
          ),
          alert(
            'WorkspacesWebApiAccessDenied', 'warning',
            'sum without (operation) (increase(%s[%s])) > 0' % [
              sel('workspacesweb_api_request_errors_total', ['error=~"AccessDenied(Exception)?"', 'operation!="GetPortal"']),
              c.accessDeniedWindow,
            ],
            c.accessDeniedFor,
            'AccessDenied from AWS for %s' % where,
            'AWS has denied the exporter\'s requests for %s for %s ({{ $labels.error }}): its polls fail. The role lacks a permission of deploy/iam/policy.json, or cannot be assumed.' % [where, utils.human(c.accessDeniedFor)],
          ),
          alert(
            'WorkspacesWebGetPortalAccessDenied', 'info',
            'increase(%s[%s]) > 0' % [
              sel('workspacesweb_api_request_errors_total', ['operation="GetPortal"', 'error="AccessDeniedException"']),
              c.getPortalDeniedWindow,
            ],
            c.getPortalDeniedFor,
            'GetPortal is denied for portal {{ $labels.portal_id }}',
            'The exporter may not call GetPortal for portal {{ $labels.portal_id }}: sessions are counted, but the portal has no workspacesweb_portal_info (the dashboard shows its id, not its name) and no workspacesweb_portal_max_concurrent_sessions (its capacity alerts cannot fire). Grant workspaces-web:GetPortal, or silence this alert if that is deliberate.',
          ),
          alert(
            'WorkspacesWebApiThrottled', 'warning',
            |||
              sum without (operation, error) (rate(%s[%s]))
                /
              sum without (operation) (rate(%s[%s]))
                > %g
            ||| % [
              sel('workspacesweb_api_request_errors_total', ['error="ThrottlingException"']),
              c.throttledWindow,
              sel('workspacesweb_api_requests_total'),
              c.throttledWindow,
              c.throttledRatio,
            ],
            c.throttledFor,
            'WorkSpaces Web API throttles the exporter for portal {{ $labels.portal_id }}',
            '{{ $value | humanizePercentage }} of the API requests for portal {{ $labels.portal_id }} were throttled over the last %s, for %s.' % [utils.human(c.throttledWindow), utils.human(c.throttledFor)],
          ),
          alert(
            'WorkspacesWebStateWriteErrors', 'warning',
            'increase(%s[%s]) > 0' % [own('workspacesweb_state_write_errors_total'), c.stateWriteErrorsWindow],
            c.stateWriteErrorsFor,
            '%s {{ $labels.instance }} cannot write its state' % c.jobName,
            'Writing the state files in --storage.path of {{ $labels.instance }} has failed for %s. Counting goes on, but a restart would resume from the last state written. See the exporter\'s log and the directory\'s disk.' % utils.human(c.stateWriteErrorsFor),
          ),
        ],
      },
      {
        name: 'workspacesweb-capacity',
        rules: [
          alert(
            'WorkspacesWebPortalNearCapacity', 'warning',
            '%s\n  > %g\n' % [capacityRatio, c.nearCapacityRatio],
            c.nearCapacityFor,
            'Portal {{ $labels.portal_id }} is above %s of its session capacity' % utils.percent(c.nearCapacityRatio),
            '{{ $value | humanizePercentage }} of the maximum concurrent sessions of portal {{ $labels.portal_id }} are in use; new users will soon be refused.',
          ),
          alert(
            'WorkspacesWebPortalAtCapacity', 'critical',
            '%s\n  >= %g\n' % [capacityRatio, c.atCapacityRatio],
            c.atCapacityFor,
            'Portal {{ $labels.portal_id }} is at its session capacity',
            '{{ $value | humanizePercentage }} of the maximum concurrent sessions of portal {{ $labels.portal_id }} are in use; users are being refused or are about to be.',
          ),
          alert(
            'WorkspacesWebPortalCapacityReached', 'warning',
            'max_over_time(%s[%s])\n  >= (%s > 0)\n' % [
              sel('workspacesweb_active_sessions_peak'),
              c.capacityReachedWindow,
              sel('workspacesweb_portal_max_concurrent_sessions'),
            ],
            c.capacityReachedFor,
            'Portal {{ $labels.portal_id }} reached its session capacity in the last %s' % utils.human(c.capacityReachedWindow),
            'Up to {{ $value }} sessions of portal {{ $labels.portal_id }} were active at once in the last %s, as many as its maxConcurrentSessions allows: new users may have been refused.' % utils.human(c.capacityReachedWindow),
          ),
          alert(
            'WorkspacesWebPortalTimeAtCapacityHigh', 'critical',
            'increase(%s[1h]) / 3600 > %g' % [sel('workspacesweb_portal_at_capacity_seconds_total'), c.timeAtCapacityRatio],
            c.timeAtCapacityFor,
            'Portal {{ $labels.portal_id }} was at its session capacity for over %s of the last hour' % utils.percent(c.timeAtCapacityRatio),
            'Portal {{ $labels.portal_id }} had as many sessions as its maxConcurrentSessions allows for {{ $value | humanizePercentage }} of the last hour: new users were refused.',
          ),
          alert(
            'WorkspacesWebActiveSessionsDroppedToZero', 'critical',
            |||
              %s == 0
                and max_over_time(%s[1h] offset %s) >= %d
                and on () (hour() >= %d < %d)
                and on () (day_of_week() >= %d <= %d)
            ||| % [
              sel('workspacesweb_active_sessions'),
              sel('workspacesweb_active_sessions'),
              c.droppedToZeroFor,
              c.droppedToZeroMinSessions,
              c.businessHours.start,
              c.businessHours.end,
              c.businessHours.firstDay,
              c.businessHours.lastDay,
            ],
            c.droppedToZeroFor,
            'Portal {{ $labels.portal_id }} dropped to zero active sessions during business hours',
            'Portal {{ $labels.portal_id }} had sessions an hour ago and has had none for %s. Check the portal, its identity provider and its network settings.' % utils.human(c.droppedToZeroFor),
          ),
        ],
      },
    ],
  },
}
