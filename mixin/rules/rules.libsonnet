// Recording rules: the expensive queries of the dashboard, precomputed. Names follow
// level:metric:operations; job, instance, portal_id and the static labels are kept, so that
// several exporters (or shards) do not collide.
local utils = import '../lib/utils.libsonnet';

{
  prometheusRules+:: {
    local c = $._config,
    local sel(metric) = utils.selector(c, metric),

    groups+: [
      {
        // A 1-day window over every portal is the expensive part: evaluated rarely.
        name: 'workspacesweb-daily',
        interval: c.dailyRulesInterval,
        rules: [
          {
            // Session-hours per portal over the last 24 hours (rolling).
            record: 'portal:workspacesweb_session_hours:increase1d',
            expr: 'increase(%s[1d]) / 3600' % sel('workspacesweb_session_seconds_total'),
          },
          {
            // Monthly active users per AWS account: account_id of workspacesweb_portal_info, or
            // the account of its portal_arn for exporters that do not expose account_id. Needs
            // workspacesweb_portal_info; replicas scraping the same portal count once.
            record: 'account:workspacesweb_monthly_active_users:sum',
            expr: |||
              sum by (account_id) (
                max by (portal_id) (%s)
                  * on (portal_id) group_left (account_id)
                topk by (portal_id) (1,
                  group by (portal_id, account_id) (
                    label_replace(%s, "account_id", "$1", "portal_arn", "%s")
                  )
                )
              )
            ||| % [sel('workspacesweb_monthly_active_users'), sel('workspacesweb_portal_info'), utils.arnAccountRegex],
          },
        ],
      },
      {
        name: 'workspacesweb-ratios',
        interval: c.ratioRulesInterval,
        rules: [
          {
            // Share of the portal's capacity in use (0..1); absent for portals without a limit.
            record: 'portal:workspacesweb_capacity_used:ratio',
            expr: '%s / (%s > 0)' % [sel('workspacesweb_active_sessions'), sel('workspacesweb_portal_max_concurrent_sessions')],
          },
        ],
      },
    ],
  },
}
