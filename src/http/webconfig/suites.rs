//! Go's names for TLS versions, cipher suites and curves, mapped to rustls (aws-lc-rs).
//!
//! - `min_version`/`max_version`: `TLS12`, `TLS13`; `TLS10` and `TLS11` are refused (rustls
//!   speaks TLS 1.2 and 1.3 only).
//! - `cipher_suites`: the names of Go's `tls.CipherSuites()`. The six ECDHE AES-GCM and
//!   ChaCha20 suites map to rustls' TLS 1.2 suites, in the listed order (the server's order of
//!   preference). Go ignores the list for TLS 1.3; here, TLS 1.3 suites named in the list
//!   restrict TLS 1.3 too, and a list without any leaves all three on (as in Go). The CBC and
//!   RSA-key-exchange suites Go still knows are refused by name: rustls does not implement them.
//! - `curve_preferences`: `X25519`, `CurveP256`, `CurveP384` and `X25519MLKEM768`, in the
//!   listed order; `CurveP521` is refused by name (rustls' aws-lc-rs provider has no P-521).
//!
//! An unknown name is refused naming it, as in the toolkit.

use rustls::SupportedCipherSuite;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::{cipher_suite as cs, kx_group};

use super::Invalid;

/// Go cipher suite names rustls implements.
const SUITES: [(&str, SupportedCipherSuite); 9] = [
    ("TLS_AES_128_GCM_SHA256", cs::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", cs::TLS13_AES_256_GCM_SHA384),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Go cipher suite names (`tls.CipherSuites()` and `tls.InsecureCipherSuites()`) rustls does
/// not implement.
const GO_ONLY_SUITES: [&str; 12] = [
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
];

/// Go curve names rustls implements.
const CURVES: [(&str, &dyn SupportedKxGroup); 4] = [
    ("X25519", kx_group::X25519),
    ("CurveP256", kx_group::SECP256R1),
    ("CurveP384", kx_group::SECP384R1),
    ("X25519MLKEM768", kx_group::X25519MLKEM768),
];

/// The cipher suites of `cipher_suites` (`None`: rustls' defaults), in preference order.
pub(super) fn cipher_suites(
    names: Option<&[String]>,
) -> Result<Option<Vec<SupportedCipherSuite>>, Invalid> {
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let mut suites = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let key = format!("tls_server_config.cipher_suites[{i}]");
        match SUITES.iter().find(|(go, _)| go == name) {
            Some((_, suite)) if !suites.contains(suite) => suites.push(*suite),
            Some(_) => {}
            None if GO_ONLY_SUITES.contains(&name.as_str()) => {
                return Err(Invalid::new(
                    key,
                    format!(
                        "{name} is not supported: rustls implements only the ECDHE suites \
                         with AES-GCM or ChaCha20-Poly1305 (and the TLS 1.3 ones)"
                    ),
                ));
            }
            None => {
                return Err(Invalid::new(
                    key,
                    format!(
                        "unknown cipher suite {name:?}; expected one of {}",
                        names_of(&SUITES)
                    ),
                ));
            }
        }
    }
    // Go does not let the list restrict TLS 1.3: without a TLS 1.3 suite in it, all stay on.
    if !suites
        .iter()
        .any(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
    {
        suites.extend(
            SUITES
                .iter()
                .map(|(_, s)| *s)
                .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_))),
        );
    }
    Ok(Some(suites))
}

/// The key-exchange groups of `curve_preferences` (`None`: rustls' defaults), in order.
pub(super) fn kx_groups(
    names: Option<&[String]>,
) -> Result<Option<Vec<&'static dyn SupportedKxGroup>>, Invalid> {
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let key = format!("tls_server_config.curve_preferences[{i}]");
        match CURVES.iter().find(|(go, _)| go == name) {
            Some((_, group)) => {
                if !groups.iter().any(|g| g.name() == group.name()) {
                    groups.push(*group);
                }
            }
            None if name == "CurveP521" => {
                return Err(Invalid::new(
                    key,
                    "CurveP521 is not supported: rustls (aws-lc-rs) offers X25519, CurveP256, \
                     CurveP384 and X25519MLKEM768",
                ));
            }
            None => {
                return Err(Invalid::new(
                    key,
                    format!(
                        "unknown curve {name:?}; expected one of {}",
                        names_of(&CURVES)
                    ),
                ));
            }
        }
    }
    Ok(Some(groups))
}

/// Parses `TLS12`/`TLS13` as 12/13; `default` when unset.
pub(super) fn version(value: Option<&str>, name: &str, default: u8) -> Result<u8, Invalid> {
    let key = format!("tls_server_config.{name}");
    match value.unwrap_or("") {
        "" => Ok(default),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        old @ ("TLS10" | "TLS11") => Err(Invalid::new(
            key,
            format!("{old} is not supported: rustls speaks TLS12 and TLS13 only"),
        )),
        other => Err(Invalid::new(
            key,
            format!("unknown TLS version {other:?}; expected TLS12 or TLS13"),
        )),
    }
}

fn names_of<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suites_keep_their_order_and_tls13_stays_on_unless_restricted() {
        let got = cipher_suites(Some(&strings(&[
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ])))
        .unwrap()
        .unwrap();
        assert_eq!(got[0], cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384);
        assert_eq!(got[1], cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256);
        assert_eq!(got.len(), 5, "the three TLS 1.3 suites follow");
        let only = cipher_suites(Some(&strings(&["TLS_AES_256_GCM_SHA384"])))
            .unwrap()
            .unwrap();
        assert_eq!(only, [cs::TLS13_AES_256_GCM_SHA384]);
        assert!(cipher_suites(None).unwrap().is_none());
    }

    #[test]
    fn go_only_and_unknown_suites_are_refused_by_name() {
        let e = cipher_suites(Some(&strings(&[
            "TLS_AES_128_GCM_SHA256",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
        ])))
        .unwrap_err();
        assert_eq!(e.key, "tls_server_config.cipher_suites[1]");
        assert!(
            e.message
                .contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported")
        );
        let e = cipher_suites(Some(&strings(&["TLS_MADE_UP"]))).unwrap_err();
        assert!(
            e.message.contains("unknown cipher suite \"TLS_MADE_UP\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn curves_map_and_p521_is_refused_by_name() {
        let got = kx_groups(Some(&strings(&["CurveP384", "X25519"])))
            .unwrap()
            .unwrap();
        let names: Vec<_> = got.iter().map(|g| g.name()).collect();
        assert_eq!(names, [kx_group::SECP384R1.name(), kx_group::X25519.name()]);
        let e = kx_groups(Some(&strings(&["CurveP521"]))).unwrap_err();
        assert_eq!(e.key, "tls_server_config.curve_preferences[0]");
        assert!(e.message.contains("CurveP521 is not supported"));
        let e = kx_groups(Some(&strings(&["CurveP257"]))).unwrap_err();
        assert!(e.message.contains("unknown curve \"CurveP257\""));
    }
}
