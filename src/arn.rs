//! Splitting Amazon Resource Names; each caller checks the fields it cares about.

/// The six `:`-separated fields of an ARN (`arn`, partition, service, region, account,
/// resource); the resource keeps any further `:`. `None` with fewer than six fields.
pub fn fields(arn: &str) -> Option<[&str; 6]> {
    let mut parts = arn.splitn(6, ':');
    Some([
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_fields_the_last_keeps_its_colons() {
        assert_eq!(
            fields("arn:aws:iam::123456789012:role/a:b"),
            Some(["arn", "aws", "iam", "", "123456789012", "role/a:b"])
        );
        assert_eq!(fields("arn:aws:iam::123456789012"), None);
        assert_eq!(fields(""), None);
    }
}
