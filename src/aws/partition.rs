//! AWS partitions: the partition a region belongs to (it names IAM roles:
//! `arn:<partition>:iam::<account>:role/<name>`), and the region of each partition's one
//! Organizations endpoint (Organizations is a global service: one endpoint per partition).

/// Region prefixes of the partitions other than `aws`, longest first.
const PARTITION_PREFIXES: [(&str, &str); 7] = [
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
    ("us-gov-", "aws-us-gov"),
    ("eusc-", "aws-eusc"),
    ("cn-", "aws-cn"),
];

/// The region of each partition's Organizations endpoint (the SDK's endpoint rules for
/// Organizations send every region of the partition there, and sign for this region).
const ORGANIZATIONS_REGIONS: [(&str, &str); 6] = [
    ("aws", "us-east-1"),
    ("aws-us-gov", "us-gov-west-1"),
    ("aws-cn", "cn-northwest-1"),
    ("aws-iso", "us-iso-east-1"),
    ("aws-iso-b", "us-isob-east-1"),
    ("aws-iso-f", "us-isof-south-1"),
];

/// The partition of `region`: `aws-cn` for `cn-north-1`, `aws-us-gov` for `us-gov-west-1`, ...,
/// `aws` for the commercial regions.
pub fn partition_of_region(region: &str) -> &'static str {
    PARTITION_PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// The region of `partition`'s Organizations endpoint (`us-east-1` for `aws`); `None` for a
/// partition whose endpoint the exporter does not know (the SDK's endpoint rules then choose it
/// from a region of the partition).
pub fn organizations_region(partition: &str) -> Option<&'static str> {
    ORGANIZATIONS_REGIONS
        .iter()
        .find(|(p, _)| *p == partition)
        .map(|(_, region)| *region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_map_to_their_partition_and_its_organizations_endpoint() {
        for (region, partition, organizations) in [
            ("us-east-1", "aws", Some("us-east-1")),
            ("eu-west-1", "aws", Some("us-east-1")),
            ("ap-southeast-3", "aws", Some("us-east-1")),
            ("us-gov-west-1", "aws-us-gov", Some("us-gov-west-1")),
            ("us-gov-east-1", "aws-us-gov", Some("us-gov-west-1")),
            ("cn-north-1", "aws-cn", Some("cn-northwest-1")),
            ("cn-northwest-1", "aws-cn", Some("cn-northwest-1")),
            ("us-iso-east-1", "aws-iso", Some("us-iso-east-1")),
            ("us-isob-east-1", "aws-iso-b", Some("us-isob-east-1")),
            ("us-isof-south-1", "aws-iso-f", Some("us-isof-south-1")),
            ("eu-isoe-west-1", "aws-iso-e", None),
            ("eusc-de-east-1", "aws-eusc", None),
        ] {
            assert_eq!(partition_of_region(region), partition, "{region}");
            assert_eq!(organizations_region(partition), organizations, "{region}");
        }
    }
}
