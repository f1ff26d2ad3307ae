//! Amazon Resource Names: their six fields (each caller checks the fields it cares about), and
//! the portal id, region and account read from them.

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

/// The portal id of a WorkSpaces Web portal ARN (`arn:<partition>:workspaces-web:<region>:<account>:portal/<id>`).
pub fn portal_id_of_arn(arn: &str) -> Option<&str> {
    let ["arn", _, "workspaces-web", _, _, resource] = fields(arn)? else {
        return None;
    };
    let id = resource.strip_prefix("portal/")?;
    (id.len() == 36 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(id)
}

/// The region of a WorkSpaces Web ARN.
pub fn region_of_arn(arn: &str) -> Option<&str> {
    portal_id_of_arn(arn)?;
    fields(arn).map(|f| f[3]).filter(|r| !r.is_empty())
}

/// The account id of an ARN (`arn:<partition>:<service>:<region>:<account>:<resource>`), when it is 12 digits.
pub fn account_of_arn(arn: &str) -> Option<&str> {
    let ["arn", _, _, _, account, _] = fields(arn)? else {
        return None;
    };
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
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

    #[test]
    fn portal_arns_are_parsed_strictly() {
        let arn = "arn:aws:workspaces-web:eu-west-1:123456789012:portal/11111111-2222-3333-4444-555555555555";
        assert_eq!(
            portal_id_of_arn(arn),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(region_of_arn(arn), Some("eu-west-1"));
        assert_eq!(
            portal_id_of_arn("arn:aws:workspaces-web:eu-west-1:1:browserSettings/x"),
            None
        );
        assert_eq!(portal_id_of_arn("arn:aws:s3:::bucket"), None);
        assert_eq!(
            portal_id_of_arn("portal/11111111-2222-3333-4444-555555555555"),
            None
        );
    }
}
