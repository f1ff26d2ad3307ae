// The Grafana dashboard, written as plain JSON (no library). Portals are shown by their display
// name (from workspacesweb_portal_info), or by their id when the exporter may not call GetPortal.
local utils = import '../lib/utils.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local ds = { type: 'prometheus', uid: '${datasource}' },

    // Matchers of the variables: the job, then each static label, then the portal.
    local jobSel = 'job=~"$job"',
    local labelSel(labels) = std.join('', [', %s=~"$%s"' % [l, l] for l in labels]),
    local filterSel = jobSel + labelSel(c.staticLabels),
    local portalSel = filterSel + ', portal_id=~"$portal_id"',
    local m(metric) = '%s{%s}' % [metric, portalSel],

    // One series per portal with its display name: from portal_info where known and not empty,
    // else the portal id. Joined onto per-portal series by `named`.
    local names(sel) =
      'topk by (portal_id) (1, group by (portal_id, display_name) (workspacesweb_portal_info{%s, display_name!=""})' % sel
      + ' or on (portal_id) label_replace(group by (portal_id) (workspacesweb_up{%s}), "display_name", "$1", "portal_id", "(.*)"))' % sel,
    // The portal variable: portals of the selected accounts (the account in portal_arn, which
    // every portal_info has) by display name; portals without portal_info (no account known) are
    // listed whatever the account.
    local accountArn = 'portal_arn=~"arn:[^:]+:workspaces-web:[^:]*:$account:.*"',
    local portalOptions(sel) =
      'topk by (portal_id) (1, group by (portal_id, display_name) (workspacesweb_portal_info{%s, display_name!="", %s}))' % [sel, accountArn]
      + ' or on (portal_id) label_replace(group by (portal_id) (workspacesweb_up{%s}) unless on (portal_id) workspacesweb_portal_info{%s}, "display_name", "$1", "portal_id", "(.*)")' % [sel, sel],
    // The account variable: accounts by name from organization discovery, and the accounts of
    // the portals' ARNs (named by their id) for portals configured or discovered otherwise.
    local accountOptions =
      'group by (account_id, account_name) (workspacesweb_account_info{%s})' % jobSel
      + ' or on (account_id) label_replace(group by (account_id) (label_replace(workspacesweb_portal_info{%s}, "account_id", "$1", "portal_arn", "%s")), "account_name", "$1", "account_id", "(.*)")' % [jobSel, utils.arnAccountRegex],
    local named(expr) = '%s\n  * on (portal_id) group_left (display_name)\n%s' % [expr, names(portalSel)],

    local recordingNote = ' Needs the recording rules (deploy/prometheus/recording.yml).',

    local target(expr, legend='', refId='A') = {
      datasource: ds,
      expr: expr,
      legendFormat: legend,
      refId: refId,
    },
    local instant = { instant: true, range: false },
    local asTable = { format: 'table' } + instant,
    local at(x, y, w, h) = { gridPos: { h: h, w: w, x: x, y: y } },

    local panel(id, type, title, description, targets) = {
      type: type,
      title: title,
      id: id,
      datasource: ds,
      description: description,
      targets: targets,
    },
    local stat(id, title, description, unit, targets, graphMode='area', textMode='auto') =
      panel(id, 'stat', title, description, [t + instant for t in targets]) + {
        fieldConfig: { defaults: { unit: unit }, overrides: [] },
        options: {
          reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
          colorMode: 'value',
          graphMode: graphMode,
          textMode: textMode,
        },
      },
    local timeseries(id, title, description, unit, targets, stacking='none') =
      panel(id, 'timeseries', title, description, targets) + {
        fieldConfig: {
          defaults: {
            unit: unit,
            custom: {
              drawStyle: 'line',
              lineWidth: 1,
              fillOpacity: 10,
              showPoints: 'never',
              stacking: { mode: stacking, group: 'A' },
            },
          },
          overrides: [],
        },
        options: {
          legend: { displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'] },
          tooltip: { mode: 'multi', sort: 'desc' },
        },
      },
    // The second query of a panel (its limit) drawn dashed and unfilled.
    local dashedB = {
      fieldConfig+: {
        overrides: [{
          matcher: { id: 'byFrameRefID', options: 'B' },
          properties: [
            { id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } },
            { id: 'custom.fillOpacity', value: 0 },
          ],
        }],
      },
    },
    local table(id, title, description, targets, transformations) =
      panel(id, 'table', title, description, [t + asTable for t in targets]) + {
        fieldConfig: { defaults: {}, overrides: [] },
        options: {},
        transformations: transformations,
      },
    local row(id, title, y, collapsed=false, panels=[]) = {
      type: 'row',
      title: title,
      id: id,
      collapsed: collapsed,
      gridPos: { h: 1, w: 24, x: 0, y: y },
    } + (if collapsed then { panels: panels } else {}),

    // allValue: '.*' sends a regex matching every value (and series without the label); null lets
    // Grafana send the options themselves, which is what the portal variable needs to follow the
    // account variable.
    local queryVariable(name, label, query, description, regex='', allValue='.*') = {
      name: name,
      label: label,
      type: 'query',
      datasource: ds,
      query: { query: query, refId: name },
      definition: query,
      regex: regex,
      refresh: 2,
      multi: true,
      includeAll: true,
      allValue: allValue,
      current: { selected: true, text: ['All'], value: ['$__all'] },
      sort: 1,
      description: description,
    },

    local overview = [
      row(1, 'Portal overview', 0),
      stat(2, 'Active sessions', 'Sessions with status Active at the last poll, all selected portals.', 'short', [
        target('sum(%s)' % m('workspacesweb_active_sessions')),
      ]) + at(0, 1, 4, 4),
      stat(3, 'Active users', 'Distinct usernames among the active sessions, summed over portals (a user active on two portals counts twice).', 'short', [
        target('sum(%s)' % m('workspacesweb_active_users')),
      ]) + at(4, 1, 4, 4),
      stat(4, 'Capacity used', "Active sessions against the sum of the portals' maxConcurrentSessions (portals that report a limit; needs GetPortal).", 'percentunit', [
        target('sum(%s and on (portal_id) (%s > 0)) / sum(%s > 0)' % [
          m('workspacesweb_active_sessions'),
          m('workspacesweb_portal_max_concurrent_sessions'),
          m('workspacesweb_portal_max_concurrent_sessions'),
        ]),
      ]) + at(8, 1, 4, 4),
      stat(5, 'Monthly active users', 'Distinct users with a session in the current UTC month, summed over portals: what AWS bills on.', 'short', [
        target('sum(%s)' % m('workspacesweb_monthly_active_users')),
      ]) + at(12, 1, 4, 4),
      stat(6, 'Session-hours (24h)', 'Session time consumed over the last 24 hours.', 'h', [
        target('sum(increase(%s[1d])) / 3600' % m('workspacesweb_session_seconds_total')),
      ]) + at(16, 1, 4, 4),
      stat(7, 'Portals polled OK', 'Share of the selected portals whose last poll succeeded.', 'percentunit', [
        target('sum(%s) / count(%s)' % [m('workspacesweb_up'), m('workspacesweb_up')]),
      ]) + at(20, 1, 4, 4),
      timeseries(8, 'Active sessions vs capacity', "Active sessions per portal, with the portal's maxConcurrentSessions (dashed) from GetPortal.", 'short', [
        target(named('sum by (portal_id) (%s)' % m('workspacesweb_active_sessions')), '{{display_name}} active', 'A'),
        target(named('max by (portal_id) (%s)' % m('workspacesweb_portal_max_concurrent_sessions')), '{{display_name}} max', 'B'),
      ]) + dashedB + at(0, 5, 8, 8),
      timeseries(33, 'Peak concurrent sessions vs capacity', "Highest number of sessions active at once between two polls per portal (workspacesweb_active_sessions_peak, from the API's start and end times), with the portal's maxConcurrentSessions (dashed). Unlike the sampled active sessions, it shows bursts that start and end between two polls: where the peak meets the limit, new users may have been refused.", 'short', [
        target(named('max by (portal_id) (%s)' % m('workspacesweb_active_sessions_peak')), '{{display_name}} peak', 'A'),
        target(named('max by (portal_id) (%s)' % m('workspacesweb_portal_max_concurrent_sessions')), '{{display_name}} max', 'B'),
      ]) + dashedB + { fieldConfig+: { defaults+: { custom+: { lineInterpolation: 'stepBefore' } } } } + at(8, 5, 8, 8),
      timeseries(9, 'Active users', 'Distinct usernames with an active session, per portal.', 'short', [
        target(named('sum by (portal_id) (%s)' % m('workspacesweb_active_users')), '{{display_name}}'),
      ]) + at(16, 5, 8, 8),
      timeseries(10, 'Session starts and terminations', "Sessions started (up) and terminated (down) per minute. A start is a session whose startTime is at or after the exporter's first successful poll of the portal; sessions already running then are not starts, but count as terminated when they end. So the two need not balance, and started minus terminated is not the number of active sessions: that is the \"Active sessions\" panel.", 'short', [
        target(named('sum by (portal_id) (rate(%s[$__rate_interval])) * 60' % m('workspacesweb_sessions_started_total')), '{{display_name}} started', 'A'),
        target(named('-sum by (portal_id) (rate(%s[$__rate_interval])) * 60' % m('workspacesweb_sessions_terminated_total')), '{{display_name}} terminated', 'B'),
      ]) + at(0, 13, 12, 8),
      panel(11, 'heatmap', 'Session duration', "Durations of the sessions that terminated in each interval (histogram workspacesweb_session_duration_seconds). The native histogram where Prometheus stores one (scraped in protobuf with --enable-feature=native-histograms): exact buckets at any resolution; else the classic buckets (le).", [
        target(
          'sum(increase(%s[$__rate_interval]))\nor on ()\nsum by (le) (increase(%s[$__rate_interval]))' % [
            m('workspacesweb_session_duration_seconds'),
            m('workspacesweb_session_duration_seconds_bucket'),
          ],
          '{{le}}'
        ) + { format: 'heatmap' },
      ]) + {
        fieldConfig: { defaults: {}, overrides: [] },
        options: {
          calculate: false,
          yAxis: { unit: 's' },
          cellGap: 1,
          color: { mode: 'scheme', scheme: 'Oranges', steps: 64 },
          tooltip: { show: true, yHistogram: true },
        },
      } + at(12, 13, 12, 8),
      panel(12, 'barchart', 'Session-hours per day', 'Session-hours per portal over each day (the 24 hours before each midnight, from the recording rule portal:workspacesweb_session_hours:increase1d). Set the time range to whole days.' + recordingNote, [
        target(named('sum by (portal_id) (%s)' % m('portal:workspacesweb_session_hours:increase1d')), '{{display_name}}'),
      ]) + {
        fieldConfig: { defaults: { unit: 'h' }, overrides: [] },
        options: { stacking: 'normal', legend: { displayMode: 'list', placement: 'bottom' }, xTickLabelRotation: -45 },
        interval: '1d',
        maxDataPoints: 62,
      } + at(0, 21, 12, 8),
      timeseries(13, 'Oldest active session', 'Age of the oldest active session per portal. A steady climb means a session that never ends.', 's', [
        target(named('max by (portal_id) (%s)' % m('workspacesweb_active_session_max_age_seconds')), '{{display_name}}'),
      ]) + at(12, 21, 12, 8),
      table(14, 'Portals', "One row per portal: its display name (its id when GetPortal is not permitted), its GetPortal attributes (workspacesweb_portal_info), active sessions, limit, monthly active users, and the time spent at the limit over the dashboard's range (workspacesweb_portal_at_capacity_seconds_total).", [
        target(names(portalSel), '', 'A'),
        target('max by (portal_id, account_id, region, browser_type, instance_type, portal_arn) (label_replace(%s, "account_id", "$1", "portal_arn", "%s"))' % [m('workspacesweb_portal_info'), utils.arnAccountRegex], '', 'B'),
        target('max by (portal_id) (%s)' % m('workspacesweb_active_sessions'), '', 'C'),
        target('max by (portal_id) (%s)' % m('workspacesweb_portal_max_concurrent_sessions'), '', 'D'),
        target('max by (portal_id) (%s)' % m('workspacesweb_monthly_active_users'), '', 'E'),
        target('max by (portal_id) (increase(%s[$__range]))' % m('workspacesweb_portal_at_capacity_seconds_total'), '', 'F'),
      ], [
        { id: 'merge', options: {} },
        {
          id: 'organize',
          options: {
            excludeByName: { Time: true, 'Value #A': true, 'Value #B': true },
            indexByName: { display_name: 0, portal_id: 1, account_id: 2 },
            renameByName: {
              display_name: 'Portal',
              portal_id: 'Portal id',
              account_id: 'Account',
              'Value #C': 'Active sessions',
              'Value #D': 'Max concurrent',
              'Value #E': 'Monthly active users',
              'Value #F': 'Time at capacity',
            },
          },
        },
      ]) + {
        fieldConfig+: { overrides: [{ matcher: { id: 'byName', options: 'Time at capacity' }, properties: [{ id: 'unit', value: 's' }] }] },
      } + at(0, 29, 16, 6),
      table(15, 'Monthly active users by account', "Sum of the per-portal monthly active users per AWS account (recording rule account:workspacesweb_monthly_active_users:sum; needs workspacesweb_portal_info), with the account's name where organization discovery knows it. Filtered by the account variable only: it is account-wide." + recordingNote, [
        target(|||
          sort_desc(
            account:workspacesweb_monthly_active_users:sum{account_id=~"$account"}
              * on (account_id) group_left (account_name)
            topk by (account_id) (1, group by (account_id, account_name) (workspacesweb_account_info{%s}))
            or
            account:workspacesweb_monthly_active_users:sum{account_id=~"$account"}
          )
        ||| % jobSel),
      ], [
        {
          id: 'organize',
          options: {
            excludeByName: { Time: true },
            indexByName: { account_name: 0, account_id: 1 },
            renameByName: { account_name: 'Account name', account_id: 'Account', Value: 'Monthly active users' },
          },
        },
      ]) + at(16, 29, if c.monthlyActiveUserPrice == null then 8 else 4, 6),
    ] + (if c.monthlyActiveUserPrice == null then [] else [
      stat(34, 'Estimated month-to-date cost', 'Monthly active users of the selected portals this UTC month, times the price per user set in the mixin (monthlyActiveUserPrice: %s). An estimate: AWS bills by its own count of users (a user active on two portals may count twice here, or once on the bill), adds other charges, and its price may differ by region or agreement. The bill is what counts.' % c.monthlyActiveUserPrice, c.dashboardCurrencyUnit, [
        target('sum(max by (portal_id) (%s)) * %s' % [m('workspacesweb_monthly_active_users'), c.monthlyActiveUserPrice]),
      ], graphMode='none') + at(20, 29, 4, 6),
    ]),

    local perUser = [
      table(17, 'Users', "Per user over the dashboard's time range: sessions active now, session-hours and sessions started (sessions that started in the range; one already running when the exporter first polled the portal is not a start). username may be hashed (per_user.username: hashed); __other__ collects users past per_user.max_users.", [
        target(named('sum by (portal_id, username) (%s)' % m('workspacesweb_user_active_sessions')), '', 'A'),
        target(named('sum by (portal_id, username) (increase(%s[$__range])) / 3600' % m('workspacesweb_user_session_seconds_total')), '', 'B'),
        target(named('sum by (portal_id, username) (increase(%s[$__range]))' % m('workspacesweb_user_sessions_started_total')), '', 'C'),
      ], [
        { id: 'merge', options: {} },
        {
          id: 'organize',
          options: {
            excludeByName: { Time: true, portal_id: true },
            indexByName: { display_name: 0, username: 1 },
            renameByName: {
              display_name: 'Portal',
              'Value #A': 'Active sessions',
              'Value #B': 'Session-hours',
              'Value #C': 'Sessions started',
            },
          },
        },
        { id: 'sortBy', options: { sort: [{ field: 'Session-hours', desc: true }] } },
      ]) + {
        options: { showHeader: true, footer: { show: true, reducer: ['sum'], fields: '' } },
      } + at(0, 36, 24, 10),
      timeseries(18, 'Top 10 users by session time', 'Concurrent sessions per user (session-seconds per second), the 10 busiest.', 'short', [
        target(named('topk(10, sum by (portal_id, username) (rate(%s[$__rate_interval])))' % m('workspacesweb_user_session_seconds_total')), '{{username}} ({{display_name}})'),
      ]) + at(0, 46, 24, 8),
    ],

    local health = [
      row(19, 'Exporter health', 36),
      timeseries(20, 'Exporter scrape up', '1 when Prometheus scrapes the exporter.', 'short', [
        target('up{%s}' % jobSel, '{{instance}}'),
      ]) + at(0, 37, 8, 7),
      timeseries(21, 'Portal poll up', '1 when the last poll of the portal succeeded.', 'short', [
        target(named(m('workspacesweb_up')), '{{display_name}} {{instance}}'),
      ]) + at(8, 37, 8, 7),
      timeseries(22, 'Time since last successful poll', 'Should stay below the poll interval.', 's', [
        target(named('time() - %s' % m('workspacesweb_last_successful_poll_timestamp_seconds')), '{{display_name}} {{instance}}'),
      ]) + at(16, 37, 8, 7),
      timeseries(23, 'Poll duration', 'Wall time of the last poll of each portal (all pages, retries included).', 's', [
        target(named(m('workspacesweb_poll_duration_seconds')), '{{display_name}} {{instance}}'),
      ]) + at(0, 44, 8, 7),
      timeseries(24, 'API requests by operation', 'Requests per second sent to the WorkSpaces Web API, retries included.', 'reqps', [
        target('sum by (operation) (rate(%s[$__rate_interval]))' % m('workspacesweb_api_requests_total'), '{{operation}}'),
      ], stacking='normal') + at(8, 44, 8, 7),
      timeseries(25, 'API errors by code', 'Failed requests per second by AWS error code (ThrottlingException, AccessDeniedException, ...), timeout, dispatch or other.', 'reqps', [
        target('sum by (operation, error) (rate(%s[$__rate_interval]))' % m('workspacesweb_api_request_errors_total'), '{{operation}} {{error}}'),
      ], stacking='normal') + at(16, 44, 8, 7),
      timeseries(26, 'Incomplete session records', 'Records the API returned without id/startTime/endTime, or with endTime before startTime; left out of durations.', 'short', [
        target(named('sum by (portal_id) (increase(%s[$__rate_interval]))' % m('workspacesweb_session_records_incomplete_total')), '{{display_name}}'),
      ]) + at(0, 51, 8, 7),
      timeseries(27, 'Memory', 'Resident memory of the exporter.', 'bytes', [
        target('process_resident_memory_bytes{%s}' % jobSel, '{{instance}}'),
      ]) + at(8, 51, 8, 7),
      timeseries(28, 'CPU', 'CPU cores used by the exporter.', 'short', [
        target('rate(process_cpu_seconds_total{%s}[$__rate_interval])' % jobSel, '{{instance}}'),
      ]) + at(16, 51, 8, 7),
      timeseries(30, 'Time since last state write', "With --storage.path: seconds since each portal's state file was last written, which happens after every successful poll. Should stay below the poll interval. Empty without --storage.path.", 's', [
        target(named('time() - %s' % m('workspacesweb_state_last_write_timestamp_seconds')), '{{display_name}} {{instance}}'),
      ]) + at(0, 58, 8, 7),
      stat(31, 'Portals resumed from state', "With --storage.path: how many of the selected portals resumed their counters from their state file when the exporter (or the portal) last started, out of all selected portals. A portal that started fresh (no file, a file older than storage.max_age, or one set aside as *.corrupt) is not counted: the exporter's log says why. Empty without --storage.path.", 'none', [
        target('sum(%s)' % m('workspacesweb_state_restored'), 'resumed', 'A'),
        target('count(%s)' % m('workspacesweb_state_restored'), 'portals', 'B'),
      ], graphMode='none', textMode='value_and_name') + at(8, 58, 8, 7),
      stat(32, 'State write errors', 'With --storage.path: failed writes of the state directory over the dashboard\'s time range, for the exporters polling the selected portals (disk full, read-only filesystem, permissions). Polling goes on, but a restart would resume from the last state written. Alert: WorkspacesWebStateWriteErrors.', 'none', [
        target('sum(increase(workspacesweb_state_write_errors_total{%s}[$__range]) and on (job, instance) %s)' % [jobSel, m('workspacesweb_up')]),
      ], graphMode='none') + {
        fieldConfig+: {
          defaults+: {
            decimals: 0,
            thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'red', value: 1 }] },
          },
        },
        options+: { colorMode: 'background' },
      } + at(16, 58, 8, 7),
      stat(35, 'Accounts discovered', 'Accounts of the AWS Organization in the discovery set of each exporter (organization discovery: ACTIVE accounts, within the configured OUs, less the excluded ones). Empty without organization discovery.', 'none', [
        target('max by (source) (workspacesweb_discovery_accounts{%s})' % jobSel, '{{source}}'),
      ], graphMode='none', textMode='value_and_name') + at(0, 65, 8, 7),
      timeseries(36, 'Discovery errors by account', "Failed requests per second of discovery (ListPortals; with organization discovery also Organizations and AssumeRole into each member account), by account, region, operation and error: their series have no portal_id. An account whose role cannot be assumed keeps its last good portals.", 'reqps', [
        target('sum by (account_id, region, operation, error) (rate(workspacesweb_api_request_errors_total{%s, portal_id=""}[$__rate_interval]))' % jobSel, '{{account_id}} {{region}} {{operation}} {{error}}'),
      ], stacking='normal') + at(8, 65, 16, 7),
      table(29, 'Build', 'Version of every exporter instance; Value is 1 when its configuration loaded.', [
        target('max by (instance, version, revision, rustc_version) (workspacesweb_exporter_build_info{%s}) * on (instance) group_left () max by (instance) (workspacesweb_config_last_reload_successful{%s})' % [jobSel, jobSel]),
      ], [
        { id: 'organize', options: { excludeByName: { Time: true }, renameByName: { Value: 'Config loaded' } } },
      ]) + at(0, 72, 24, 4),
    ],

    'workspacesweb.json': {
      // Grafana asks for a Prometheus data source on import and puts it in ${DS_PROMETHEUS}, the
      // default of the datasource variable that every panel uses.
      __inputs: [{
        name: 'DS_PROMETHEUS',
        label: 'Prometheus',
        description: 'The Prometheus that scrapes workspacesweb-exporter',
        type: 'datasource',
        pluginId: 'prometheus',
        pluginName: 'Prometheus',
      }],
      __requires: [
        { type: 'grafana', id: 'grafana', name: 'Grafana', version: '10.0.0' },
        { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
      ] + [
        { type: 'panel', id: t, name: t, version: '' }
        for t in ['barchart', 'heatmap', 'stat', 'table', 'timeseries']
      ],
      title: c.dashboardTitle,
      uid: c.dashboardUID,
      description: 'Sessions, users, capacity and API health of AWS WorkSpaces Secure Browser portals, from workspacesweb-exporter.',
      tags: c.dashboardTags,
      timezone: c.dashboardTimezone,
      editable: true,
      graphTooltip: 1,
      schemaVersion: 39,
      version: 1,
      refresh: c.dashboardRefresh,
      time: { from: 'now-24h', to: 'now' },
      links: [],
      annotations: {
        list: [{
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        }],
      },
      templating: {
        list: [
          {
            name: 'datasource',
            label: 'Data source',
            type: 'datasource',
            query: 'prometheus',
            current: { selected: true, text: '${DS_PROMETHEUS}', value: '${DS_PROMETHEUS}' },
            hide: 0,
            refresh: 1,
            regex: '',
          },
          queryVariable(
            'job', 'Job',
            'label_values(workspacesweb_exporter_build_info{%s}, job)' % c.jobSelector,
            'Scrape job(s) of the exporter.',
          ),
        ] + [
          // Each static label is filtered by the job and the static labels before it.
          queryVariable(
            c.staticLabels[i], c.staticLabels[i],
            'label_values(workspacesweb_up{%s%s}, %s)' % [jobSel, labelSel(c.staticLabels[0:i]), c.staticLabels[i]],
            "A static label of the exporter's config (global.labels or portals[].labels).",
          )
          for i in std.range(0, std.length(c.staticLabels) - 1)
        ] + [
          queryVariable(
            'account', 'Account',
            'query_result(%s)' % accountOptions,
            'AWS accounts by name (organization discovery, workspacesweb_account_info), or by id (the account of each portal ARN). Selects the portals of the portal variable.',
            regex='/account_id="(?<value>[^"]*)",account_name="(?<text>[^"]*)"/',
          ),
          queryVariable(
            'portal_id', 'Portal',
            'query_result(%s)' % portalOptions(filterSel),
            'Portals of the selected accounts by display name (from GetPortal), or by id where the exporter may not call GetPortal (those are listed for every account).',
            regex='/display_name="(?<text>[^"]*)".*portal_id="(?<value>[^"]*)"/',
            allValue=null,
          ),
        ],
      },
      panels: overview + [row(16, 'Per user (per_user.enabled)', 35, collapsed=true, panels=perUser) + {
        description: "Only populated when per_user.enabled is true in the exporter's configuration.",
      }] + health,
    },
  },
}
