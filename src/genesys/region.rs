//! Genesys Cloud regions and the hosts derived from them.

/// Region name → the one domain that region's hosts live under.
const REGION_DOMAINS: &[(&str, &str)] = &[
    ("us-east-1", "mypurecloud.com"),
    ("us-east-2", "use2.us-gov-pure.cloud"),
    ("us-west-2", "usw2.pure.cloud"),
    ("ca-central-1", "cac1.pure.cloud"),
    ("sa-east-1", "sae1.pure.cloud"),
    ("mx-central-1", "mxc1.pure.cloud"),
    ("eu-west-1", "mypurecloud.ie"),
    ("eu-west-2", "euw2.pure.cloud"),
    ("eu-central-1", "mypurecloud.de"),
    ("eu-central-2", "euc2.pure.cloud"),
    ("eusc-de-east-1", "edee1.eusc-pure.cloud"),
    ("me-central-1", "mec1.pure.cloud"),
    ("ap-south-1", "aps1.pure.cloud"),
    ("ap-northeast-1", "mypurecloud.jp"),
    ("ap-northeast-2", "apne2.pure.cloud"),
    ("ap-northeast-3", "apne3.pure.cloud"),
    ("ap-southeast-1", "apse1.pure.cloud"),
    ("ap-southeast-2", "mypurecloud.com.au"),
];

/// The domain of a region, e.g. `eu-west-1` → `mypurecloud.ie`.
pub fn domain(region: &str) -> Option<&'static str> {
    REGION_DOMAINS
        .iter()
        .find(|(name, _)| *name == region)
        .map(|(_, domain)| *domain)
}

/// All known region names, for error messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGION_DOMAINS.iter().map(|(name, _)| *name)
}

/// The REST and login base URLs of a region.
pub fn base_urls(region: &str) -> Option<(String, String)> {
    domain(region).map(|d| (format!("https://api.{d}"), format!("https://login.{d}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_region_maps_to_api_and_login_hosts() {
        let (api, login) = base_urls("eu-central-1").unwrap();
        assert_eq!(api, "https://api.mypurecloud.de");
        assert_eq!(login, "https://login.mypurecloud.de");
    }

    #[test]
    fn unknown_region_is_none() {
        assert!(base_urls("mars-north-1").is_none());
        assert_eq!(names().count(), 18);
    }
}
