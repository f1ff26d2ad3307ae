// Alerting rules. Each alert's runbook is the section of docs/runbook.md named after it.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local sel(metric, more=[]) = utils.selector(c, metric, more),
    local own(metric) = utils.selector(c, metric, portal=false),
    local alert(name, severity, expr, forDuration, summary, description) = {
      alert: name,
      // Multi-line expressions end with a newline, so that the YAML shows them as a block.
      expr: if std.length(std.findSubstr('\n', expr)) > 0 && !std.endsWith(expr, '\n') then expr + '\n' else expr,
      'for': forDuration,
      labels: { severity: severity },
      annotations: {
        summary: summary,
        description: description,
        runbook_url: c.runbookURLPattern % std.asciiLower(name),
      },
    },
    // A portal-level expression with the portal's name, region and account as labels.
    local named(expr) = utils.withPortalLabels(c, expr),
    // How the text of an alert names its portal: display name, region and account (the id when
    // the portal has no workspacesweb_portal_info, and then no region or account).
    local portal = '"{{ $labels.display_name }}"{{ with $labels.region }} in {{ . }}{{ end }}{{ with $labels.account_id }} (account {{ . }}){{ end }}',
    local portalId = '(id {{ $labels.portal_id }})',
    // Capacity in use where the portal reports a limit (portals with none, or 0, are left out).
    local capacityRatio =
      '%s\n  / (%s > 0)' % [sel('workspacesweb_active_sessions'), sel('workspacesweb_portal_max_concurrent_sessions')],
    // While a more severe capacity alert fires for the same portal (and exporter), a milder one
    // stays quiet: one condition, one alert. Rules of a group are evaluated in order, so those
    // named here come first in the group and their ALERTS series are current.
    local unlessFiring(expr, names) = '(\n%s\n)\nunless on (job, instance, portal_id)\n  ALERTS{alertname=~"%s", alertstate="firing"}' % [
      utils.indent(expr, 2),
      std.join('|', names),
    ],
    // Where a denial happened: a portal, or discovery in a region (its series have no portal_id;
    // organization discovery's have the member account_id).
    local whereTemplate(p) = '{{ with $labels.portal_id }}portal %s{{ else }}discovery in {{ $labels.region }}{{ with $labels.account_id }} of account {{ . }}{{ end }}{{ end }}' % p,
    local where = whereTemplate(portal),
    local whereWithId = whereTemplate(portal + ' ' + portalId),

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
            named('%s == 0' % sel('workspacesweb_up')),
            c.pollFailingFor,
            'Polling WorkSpaces Secure Browser portal %s fails' % portal,
            'The polls of portal %s %s by {{ $labels.instance }} have failed for %s. See workspacesweb_api_request_errors_total and the exporter\'s log.' % [portal, portalId, utils.human(c.pollFailingFor)],
          ),
          alert(
            'WorkspacesWebApiAccessDenied', 'warning',
            local denied(more) = 'sum without (operation) (increase(%s[%s])) > 0' % [
              sel('workspacesweb_api_request_errors_total', ['error=~"AccessDenied(Exception)?"', 'operation!="GetPortal"'] + more),
              c.accessDeniedWindow,
            ];
            // Portals get their labels; discovery (no portal_id) keeps its region and account.
            '%s\nor\n%s' % [named(denied(['portal_id!=""'])), denied(['portal_id=""'])],
            c.accessDeniedFor,
            'AccessDenied from AWS for %s' % where,
            'AWS has denied the exporter\'s requests for %s for %s ({{ $labels.error }}): its polls fail. The role lacks a permission of deploy/iam/policy.json, or cannot be assumed.' % [whereWithId, utils.human(c.accessDeniedFor)],
          ),
          alert(
            'WorkspacesWebGetPortalAccessDenied', 'info',
            named('increase(%s[%s]) > 0' % [
              sel('workspacesweb_api_request_errors_total', ['operation="GetPortal"', 'error="AccessDeniedException"']),
              c.getPortalDeniedWindow,
            ]),
            c.getPortalDeniedFor,
            'GetPortal is denied for portal {{ $labels.portal_id }}',
            'The exporter may not call GetPortal for portal {{ $labels.portal_id }}: sessions are counted, but the portal has no workspacesweb_portal_info (the dashboard and the alerts show its id, not its name) and no workspacesweb_portal_max_concurrent_sessions (its capacity alerts cannot fire). Grant workspaces-web:GetPortal, or silence this alert if that is deliberate.',
          ),
          alert(
            'WorkspacesWebApiThrottled', 'warning',
            named(|||
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
            ]),
            c.throttledFor,
            'WorkSpaces Web API throttles the exporter for portal %s' % portal,
            '{{ $value | humanizePercentage }} of the API requests for portal %s %s were throttled over the last %s, for %s.' % [portal, portalId, utils.human(c.throttledWindow), utils.human(c.throttledFor)],
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
        // Most severe first: the milder capacity alerts look up the firing ones (unlessFiring).
        name: 'workspacesweb-capacity',
        rules: [
          alert(
            'WorkspacesWebPortalTimeAtCapacityHigh', 'critical',
            named('increase(%s[1h]) / 3600 > %g' % [sel('workspacesweb_portal_at_capacity_seconds_total'), c.timeAtCapacityRatio]),
            c.timeAtCapacityFor,
            'Portal %s was at its session capacity for over %s of the last hour' % [portal, utils.percent(c.timeAtCapacityRatio)],
            'Portal %s %s had as many sessions as its maxConcurrentSessions allows for {{ $value | humanizePercentage }} of the last hour: new users were refused.' % [portal, portalId],
          ),
          alert(
            'WorkspacesWebPortalAtCapacity', 'critical',
            named('%s\n  >= %g' % [capacityRatio, c.atCapacityRatio]),
            c.atCapacityFor,
            'Portal %s is at its session capacity' % portal,
            '{{ $value | humanizePercentage }} of the maximum concurrent sessions of portal %s %s are in use; users are being refused or are about to be.' % [portal, portalId],
          ),
          alert(
            'WorkspacesWebPortalCapacityReached', 'warning',
            unlessFiring(named('max_over_time(%s[%s])\n  >= (%s > 0)' % [
              sel('workspacesweb_active_sessions_peak'),
              c.capacityReachedWindow,
              sel('workspacesweb_portal_max_concurrent_sessions'),
            ]), ['WorkspacesWebPortalAtCapacity']),
            c.capacityReachedFor,
            'Portal %s reached its session capacity in the last %s' % [portal, utils.human(c.capacityReachedWindow)],
            'Up to {{ $value }} sessions of portal %s %s were active at once in the last %s, as many as its maxConcurrentSessions allows: new users may have been refused. Quiet while WorkspacesWebPortalAtCapacity fires for the portal.' % [portal, portalId, utils.human(c.capacityReachedWindow)],
          ),
          alert(
            'WorkspacesWebPortalNearCapacity', 'warning',
            unlessFiring(
              named('%s\n  > %g' % [capacityRatio, c.nearCapacityRatio]),
              ['WorkspacesWebPortalAtCapacity', 'WorkspacesWebPortalCapacityReached'],
            ),
            c.nearCapacityFor,
            'Portal %s is above %s of its session capacity' % [portal, utils.percent(c.nearCapacityRatio)],
            '{{ $value | humanizePercentage }} of the maximum concurrent sessions of portal %s %s are in use; new users will soon be refused. Quiet while WorkspacesWebPortalAtCapacity or WorkspacesWebPortalCapacityReached fires for the portal.' % [portal, portalId],
          ),
          alert(
            'WorkspacesWebActiveSessionsDroppedToZero', 'critical',
            named(|||
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
            ]),
            c.droppedToZeroFor,
            'Portal %s dropped to zero active sessions during business hours' % portal,
            'Portal %s %s had sessions an hour ago and has had none for %s. Check the portal, its identity provider and its network settings.' % [portal, portalId, utils.human(c.droppedToZeroFor)],
          ),
        ],
      },
    ],
  },
}
