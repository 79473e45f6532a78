//! `NO_PROXY` lists and how a target host matches them (curl's rules:
//! names with their subdomains, addresses, networks, ports, `*`).

use std::fmt;
use std::net::IpAddr;

/// Why a `NO_PROXY` list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoProxyError {
    #[error("{entry:?}: the port is not a number between 1 and 65535")]
    InvalidPort { entry: String },
    #[error("{entry:?}: not an IP address with a prefix length (e.g. 10.0.0.0/8)")]
    InvalidNetwork { entry: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    /// A domain: the host itself and every name under it.
    Domain { name: String, port: Option<u16> },
    /// An address, or a network in CIDR notation.
    Network {
        address: IpAddr,
        prefix_len: u8,
        port: Option<u16>,
    },
}

/// Hosts reached without the proxy, as curl reads `NO_PROXY`:
/// - entries separated by commas and/or blanks;
/// - `*` as the whole value: every host;
/// - a name matches itself and every host under it, case-insensitively:
///   `example.com` (or `.example.com`) matches `example.com` and
///   `api.example.com`, not `notexample.com`; trailing dots are ignored;
/// - an IP address (IPv6 without brackets) matches that address, and
///   `10.0.0.0/8` the network; names never match IP hosts, nor addresses
///   names (no DNS lookups);
///
/// and, beyond curl: an entry may end with `:port` (`[v6]:port` for IPv6)
/// to match that port only (curl would never match such an entry), and
/// `*.example.com` reads as `.example.com` (curl would never match it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    everything: bool,
    entries: Vec<NoProxyEntry>,
    written: String,
}

impl NoProxy {
    pub fn parse(text: &str) -> Result<NoProxy, NoProxyError> {
        let written = text.trim().to_owned();
        if written == "*" {
            return Ok(NoProxy {
                everything: true,
                entries: Vec::new(),
                written,
            });
        }
        let entries = written
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|token| !token.is_empty())
            .map(parse_no_proxy_entry)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(NoProxy {
            everything: false,
            entries,
            written,
        })
    }

    /// Whether `host` (as in a URL: IPv6 in brackets) on `port` skips the
    /// proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.everything {
            return true;
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port_matches = |wanted: &Option<u16>| wanted.map_or(true, |p| p == port);
        if let Ok(address) = bare.parse::<IpAddr>() {
            return self.entries.iter().any(|entry| match entry {
                NoProxyEntry::Network {
                    address: network,
                    prefix_len,
                    port,
                } => port_matches(port) && in_network(address, *network, *prefix_len),
                NoProxyEntry::Domain { .. } => false,
            });
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|entry| match entry {
            NoProxyEntry::Domain { name: domain, port } => {
                port_matches(port)
                    && (name == *domain
                        || name
                            .strip_suffix(domain.as_str())
                            .is_some_and(|prefix| prefix.ends_with('.')))
            }
            NoProxyEntry::Network { .. } => false,
        })
    }

    pub fn is_empty(&self) -> bool {
        !self.everything && self.entries.is_empty()
    }
}

impl fmt::Display for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// One entry; `None` for one that can match nothing (a lone `.`).
fn parse_no_proxy_entry(token: &str) -> Result<Option<NoProxyEntry>, NoProxyError> {
    let invalid_port = || NoProxyError::InvalidPort {
        entry: token.to_owned(),
    };
    let invalid_network = || NoProxyError::InvalidNetwork {
        entry: token.to_owned(),
    };
    let parse_port = |port: &str| {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(invalid_port)
    };
    // `[v6]` or `[v6]:port`
    if let Some(bracketed) = token.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or_else(invalid_network)?;
        let address: IpAddr = address.parse().map_err(|_| invalid_network())?;
        let port = match after {
            "" => None,
            after => Some(parse_port(
                after.strip_prefix(':').ok_or_else(invalid_port)?,
            )?),
        };
        return Ok(Some(
            network_entry(address, None, port).ok_or_else(invalid_network)?,
        ));
    }
    // `address/prefix`
    if let Some((address, prefix)) = token.split_once('/') {
        let address: IpAddr = address.parse().map_err(|_| invalid_network())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid_network())?;
        return Ok(Some(
            network_entry(address, Some(prefix), None).ok_or_else(invalid_network)?,
        ));
    }
    // a bare address (IPv6 included: curl wants them without brackets)
    if let Ok(address) = token.parse::<IpAddr>() {
        return Ok(network_entry(address, None, None));
    }
    // `name:port` or `ipv4:port`
    let (host, port) = match token.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (token, None),
    };
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(network_entry(address, None, port));
    }
    let name = host
        .strip_prefix("*.")
        .map_or(host, |rest| rest)
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if name.is_empty() {
        return Ok(None);
    }
    Ok(Some(NoProxyEntry::Domain { name, port }))
}

fn network_entry(
    address: IpAddr,
    prefix_len: Option<u8>,
    port: Option<u16>,
) -> Option<NoProxyEntry> {
    let full = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let prefix_len = prefix_len.unwrap_or(full);
    (prefix_len <= full).then_some(NoProxyEntry::Network {
        address,
        prefix_len,
        port,
    })
}

fn in_network(address: IpAddr, network: IpAddr, prefix_len: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_proxy(list: &str) -> NoProxy {
        NoProxy::parse(list).unwrap()
    }

    #[test]
    fn no_proxy_names_match_themselves_and_their_subdomains() {
        let list = no_proxy("example.com, .corp.local,Internal.");
        assert!(list.matches("example.com", 443));
        assert!(list.matches("api.example.com", 443));
        assert!(list.matches("API.Example.COM.", 443));
        assert!(!list.matches("notexample.com", 443));
        assert!(!list.matches("example.com.evil", 443));
        assert!(
            list.matches("corp.local", 80),
            "a leading dot is ignored, as in curl"
        );
        assert!(list.matches("login.corp.local", 80));
        assert!(list.matches("internal", 80), "a trailing dot is ignored");
        assert!(!list.matches("xinternal", 80));
    }

    #[test]
    fn no_proxy_star_alone_matches_everything() {
        assert!(no_proxy("*").matches("api.mypurecloud.ie", 443));
        assert!(no_proxy(" * ").matches("10.1.2.3", 443));
        // Like curl, `*` among other entries is a name that matches nothing.
        assert!(!no_proxy("localhost,*").matches("api.mypurecloud.ie", 443));
        assert!(no_proxy("").is_empty());
        assert!(!no_proxy("").matches("localhost", 80));
    }

    #[test]
    fn no_proxy_addresses_and_networks() {
        let list = no_proxy("127.0.0.1 10.0.0.0/8 ::1 fd00::/8 192.168.1.0/24");
        assert!(list.matches("127.0.0.1", 80));
        assert!(!list.matches("127.0.0.2", 80));
        assert!(list.matches("10.200.3.4", 443));
        assert!(!list.matches("11.0.0.1", 443));
        assert!(list.matches("[::1]", 443));
        assert!(list.matches("[fd12:3456::1]", 443));
        assert!(!list.matches("[fe80::1]", 443));
        assert!(list.matches("192.168.1.77", 443));
        assert!(!list.matches("192.168.2.1", 443));
        // Names never match addresses, nor addresses names: no DNS.
        assert!(!no_proxy("localhost").matches("127.0.0.1", 80));
        assert!(!no_proxy("127.0.0.1").matches("localhost", 80));
        assert!(no_proxy("0.0.0.0/0").matches("203.0.113.9", 443));
    }

    #[test]
    fn no_proxy_entries_may_name_a_port() {
        let list = no_proxy("example.com:8443,127.0.0.1:9000,[::1]:9001");
        assert!(list.matches("api.example.com", 8443));
        assert!(!list.matches("api.example.com", 443));
        assert!(list.matches("127.0.0.1", 9000));
        assert!(!list.matches("127.0.0.1", 9002));
        assert!(list.matches("[::1]", 9001));
        assert!(!list.matches("[::1]", 443));
    }

    #[test]
    fn no_proxy_star_dot_reads_as_a_leading_dot() {
        let list = no_proxy("*.example.com");
        assert!(list.matches("api.example.com", 443));
        assert!(list.matches("example.com", 443));
    }

    #[test]
    fn malformed_no_proxy_entries_are_refused() {
        assert!(matches!(
            NoProxy::parse("example.com:http"),
            Err(NoProxyError::InvalidPort { .. })
        ));
        assert!(matches!(
            NoProxy::parse("10.0.0.0/33"),
            Err(NoProxyError::InvalidNetwork { .. })
        ));
        assert!(matches!(
            NoProxy::parse("intranet/8"),
            Err(NoProxyError::InvalidNetwork { .. })
        ));
        NoProxy::parse(" , ,. ").unwrap();
    }
}
