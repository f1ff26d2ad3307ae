//! Content negotiation for the exposition: the format from `Accept`, gzip from
//! `Accept-Encoding`. The gzip stream itself is joined from pieces compressed once each
//! ([`crate::exposition::deflate`]).

use hyper::header::HeaderValue;

use crate::exposition::Format;

/// The exposition format the `Accept` header values (all of them, in order) ask for, as the
/// Prometheus client libraries negotiate it: of the media ranges the exporter can answer, the
/// one of highest `q` (> 0; the first listed among equals) wins, and text 0.0.4 when none does.
///
/// - `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` and
///   `encoding=delimited`: protobuf;
/// - `application/openmetrics-text` (version 1.0.0, 0.0.1 or none), only when `openmetrics`
///   (`--web.enable-openmetrics`): OpenMetrics 1.0;
/// - `text/plain` (version 0.0.4, 1.0.0 or none), `text/*`, `*/*`: text 0.0.4.
///
/// Other parameters (`escaping=`, `charset=`) are ignored: every name the exporter writes is a
/// valid legacy name, so no escaping scheme changes it.
pub(super) fn negotiate_format<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    openmetrics: bool,
) -> Format {
    let mut best: Option<(f32, Format)> = None;
    for value in values {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for element in value.split(',') {
            let mut parts = element.split(';');
            let range = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let params: Vec<(String, String)> = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| {
                    let v = v.trim().trim_matches('"');
                    (k.trim().to_ascii_lowercase(), v.to_string())
                })
                .collect();
            let param = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let q = quality(element.split(';').skip(1));
            let format = match range.as_str() {
                "application/vnd.google.protobuf"
                    if param("proto") == Some("io.prometheus.client.MetricFamily")
                        && param("encoding") == Some("delimited") =>
                {
                    Format::Protobuf
                }
                "application/openmetrics-text"
                    if openmetrics
                        && matches!(param("version"), None | Some("1.0.0" | "0.0.1")) =>
                {
                    Format::OpenMetrics
                }
                "text/plain" if matches!(param("version"), None | Some("0.0.4" | "1.0.0")) => {
                    Format::Text
                }
                "text/*" | "*/*" => Format::Text,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
    }
    best.map_or(Format::Text, |(_, f)| f)
}

/// Whether the `Accept-Encoding` header values (all of them, in order) accept gzip.
///
/// Follows RFC 9110 §12.5.3: `gzip` (or `x-gzip`) with `q` > 0 accepts; an explicit
/// `gzip;q=0` refuses even if `*` is accepted; otherwise `*` with `q` > 0 accepts. A `q`
/// that does not parse counts as 0, so a garbled header falls back to the identity encoding.
pub(super) fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let mut gzip: Option<f32> = None;
    let mut any: Option<f32> = None;
    for value in values {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for element in value.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            if coding.is_empty() {
                continue;
            }
            let q = quality(parts);
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding == "*" {
                    &mut any
                } else {
                    continue;
                };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    match gzip {
        Some(q) => q > 0.0,
        None => any.is_some_and(|q| q > 0.0),
    }
}

/// The `q` parameter among an element's parameters: 1 when absent, 0 when malformed.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            return match value.trim().parse::<f32>() {
                Ok(q) if (0.0..=1.0).contains(&q) => q,
                _ => 0.0,
            };
        }
    }
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&str]) -> bool {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        accepts_gzip(values.iter())
    }

    #[test]
    fn gzip_is_accepted_when_listed_with_positive_quality() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["GZIP"]));
        assert!(accepts(&["x-gzip"]));
        assert!(accepts(&["deflate, gzip;q=0.5"]));
        assert!(accepts(&["br;q=1.0, gzip ; q=0.001, *;q=0.1"]));
        assert!(accepts(&["identity", "gzip"]));
        assert!(accepts(&["*"]));
        assert!(accepts(&["gzip;Q=1"]));
    }

    #[test]
    fn gzip_is_refused_when_absent_or_quality_zero() {
        assert!(!accepts(&[]));
        assert!(!accepts(&[""]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["deflate, br"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip;q=0.000"]));
        assert!(!accepts(&["gzip;q=0, *"]));
        assert!(!accepts(&["*;q=0"]));
        assert!(!accepts(&["gzip;q=nonsense"]));
        assert!(!accepts(&["gzip;q=2"]));
        assert!(!accepts(&["gzip;q=-1"]));
        assert!(!accepts(&["gzips"]));
    }

    fn format(values: &[&str], openmetrics: bool) -> Format {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        negotiate_format(values.iter(), openmetrics)
    }

    /// What Prometheus 2.42 sends (captured from Debian's prometheus), with and without
    /// `--enable-feature=native-histograms`, and what Prometheus 3 sends.
    const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_2_42_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_3_PROTO: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

    #[test]
    fn prometheus_gets_protobuf_only_when_it_asks_first() {
        // Without the feature flag, Prometheus gets the text it gets today (OpenMetrics off).
        assert_eq!(format(&[PROMETHEUS_2_42], false), Format::Text);
        assert_eq!(format(&[PROMETHEUS_3], false), Format::Text);
        assert_eq!(format(&[PROMETHEUS_2_42_NATIVE], false), Format::Protobuf);
        assert_eq!(format(&[PROMETHEUS_3_PROTO], false), Format::Protobuf);
        // With --web.enable-openmetrics, its preference.
        assert_eq!(format(&[PROMETHEUS_2_42], true), Format::OpenMetrics);
        assert_eq!(format(&[PROMETHEUS_3], true), Format::OpenMetrics);
        assert_eq!(format(&[PROMETHEUS_2_42_NATIVE], true), Format::Protobuf);
    }

    #[test]
    fn q_values_parameters_and_defaults() {
        assert_eq!(format(&[], true), Format::Text);
        assert_eq!(format(&["application/json"], true), Format::Text);
        assert_eq!(
            format(&["application/openmetrics-text"], true),
            Format::OpenMetrics
        );
        assert_eq!(
            format(&["application/openmetrics-text; version=2.0.0"], true),
            Format::Text
        );
        assert_eq!(
            format(
                &["text/plain;q=0.9, application/openmetrics-text;q=0.2"],
                true
            ),
            Format::Text
        );
        assert_eq!(
            format(
                &[
                    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"
                ],
                true
            ),
            Format::Text,
            "only the delimited encoding"
        );
        assert_eq!(
            format(
                &[
                    "application/vnd.google.protobuf;proto=\"io.prometheus.client.MetricFamily\";encoding=delimited;q=0"
                ],
                true
            ),
            Format::Text,
            "q=0 refuses"
        );
        assert_eq!(
            format(
                &[
                    "text/plain;q=0.5",
                    "APPLICATION/VND.GOOGLE.PROTOBUF; PROTO=io.prometheus.client.MetricFamily; ENCODING=delimited"
                ],
                true
            ),
            Format::Protobuf
        );
    }
}
