// Helpers shared by the alerts and the recording rules.
{
  // `metric{matchers}`: the job selector, the portal selector (unless `portal` is false: series
  // of the exporter itself), then `more` (a list of matchers).
  selector(config, metric, more=[], portal=true)::
    local extra = if portal then [config.portalSelector] else [];
    local matchers = std.filter(function(m) m != '', [config.jobSelector] + extra + more);
    metric + '{' + std.join(', ', matchers) + '}',

  // A fraction as a whole percentage for text: 0.8 -> "80%".
  percent(ratio):: '%d%%' % std.floor(ratio * 100 + 0.5),

  // A Prometheus duration for text: '5m' -> '5 minutes', '1h' -> '1 hour'.
  human(d)::
    local units = { s: 'second', m: 'minute', h: 'hour', d: 'day' };
    local n = std.parseInt(std.substr(d, 0, std.length(d) - 1));
    local unit = units[std.substr(d, std.length(d) - 1, 1)];
    '%d %s%s' % [n, unit, if n == 1 then '' else 's'],
}
