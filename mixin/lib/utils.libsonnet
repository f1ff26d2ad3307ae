// Helpers shared by the alerts and the recording rules.
{
  // `metric{matchers}`: the job selector, the portal selector (unless `portal` is false: series
  // of the exporter itself), then `more` (a list of matchers).
  selector(config, metric, more=[], portal=true)::
    local extra = if portal then [config.portalSelector] else [];
    local matchers = std.filter(function(m) m != '', [config.jobSelector] + extra + more);
    metric + '{' + std.join(', ', matchers) + '}',

  // The account id inside a portal ARN (arn:PARTITION:workspaces-web:REGION:ACCOUNT:portal/ID).
  arnAccountRegex:: 'arn:[^:]+:workspaces-web:[^:]*:([0-9]{12}):.*',

  // One series per portal (value 1) with the labels of config.portalAlertLabels, from
  // workspacesweb_portal_info: account_id from portal_arn for exporters that do not expose it,
  // the portal id as display_name for a portal without a name. topk keeps one series per portal
  // while a rename has both names in the lookback window.
  portalLabels(config)::
    local info(more) = 'label_replace(%s, "account_id", "$1", "portal_arn", "%s")' % [
      $.selector(config, 'workspacesweb_portal_info', more),
      $.arnAccountRegex,
    ];
    |||
      topk by (portal_id) (1,
        group by (%(labels)s) (
          %(named)s
          or
          label_replace(%(unnamed)s, "display_name", "$1", "portal_id", "(.*)")
        )
      )
    ||| % {
      labels: std.join(', ', ['portal_id'] + config.portalAlertLabels),
      named: info(['display_name!=""']),
      unnamed: info(['display_name=""']),
    },

  // `expr` with the labels of config.portalAlertLabels added to each of its series. A portal
  // without workspacesweb_portal_info (GetPortal denied or not answered yet) keeps its series,
  // with its id as display_name and no region or account: the join never drops an alert.
  withPortalLabels(config, expr)::
    local labels = std.join(', ', config.portalAlertLabels);
    local e = $.indent(std.rstripChars(expr, '\n'), 2);
    '(\n%s\n)\n* on (portal_id) group_left (%s)\n%s\nor ignoring (%s)\nlabel_replace(\n%s,\n  "display_name", "$1", "portal_id", "(.*)"\n)' % [
      e,
      labels,
      std.rstripChars($.portalLabels(config), '\n'),
      labels,
      e,
    ],

  // Every line of `text` indented by `n` spaces.
  indent(text, n)::
    std.join('\n', [std.repeat(' ', n) + l for l in std.split(text, '\n')]),

  // A fraction as a whole percentage for text: 0.8 -> "80%".
  percent(ratio):: '%d%%' % std.floor(ratio * 100 + 0.5),

  // A Prometheus duration for text: '5m' -> '5 minutes', '1h' -> '1 hour'.
  human(d)::
    local units = { s: 'second', m: 'minute', h: 'hour', d: 'day' };
    local n = std.parseInt(std.substr(d, 0, std.length(d) - 1));
    local unit = units[std.substr(d, std.length(d) - 1, 1)];
    '%d %s%s' % [n, unit, if n == 1 then '' else 's'],
}
