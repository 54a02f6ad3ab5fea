//! Broker addresses as the hub and agents write them: `mqtt://[user[:password]@]host[:port]`,
//! or `mqtts://…` for MQTT over TLS.
//!
//! One parser for both sides, so a URL the hub advertises is one every agent accepts.
//! IPv6 literals are bracketed (`mqtt://[::1]:1883`); `tcp://` is accepted as a synonym of
//! `mqtt://`, `ssl://` of `mqtts://`.

use std::fmt;

/// The port of `mqtt://host` without one.
pub const DEFAULT_PORT: u16 = 1883;
/// The port of `mqtts://host` without one.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `mqtts://`: the connection is TLS.
    pub tls: bool,
}

/// Why a broker URL was refused; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrlError(pub String);

impl fmt::Display for MqttUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MqttUrlError {}

impl MqttUrl {
    /// # Errors
    /// A message naming the problem: no or another scheme, a path, a bad port, no host.
    pub fn parse(url: &str) -> Result<MqttUrl, MqttUrlError> {
        let fail = |message: String| Err(MqttUrlError(message));
        let Some((scheme, rest)) = url.split_once("://") else {
            return fail(format!("expected mqtt://host:port, got '{url}'"));
        };
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            "ws" | "wss" => {
                return fail(format!(
                    "scheme '{scheme}' is not supported by this build; use mqtt:// or mqtts://"
                ))
            }
            other => {
                return fail(format!(
                    "unknown scheme '{other}'; expected mqtt://host:port or mqtts://host:port"
                ))
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((userinfo, authority)) => (Some(userinfo), authority),
            None => (None, rest),
        };
        if authority.contains(['/', '?', '#']) {
            return fail(format!(
                "expected mqtt://host:port with no path or query, got '{url}'"
            ));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return fail(format!("unclosed '[' in '{url}'"));
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return fail(format!("unexpected '{after}' after the host in '{url}'")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return fail(format!("no host in '{url}'"));
        }
        let port = match port {
            None if tls => DEFAULT_TLS_PORT,
            None => DEFAULT_PORT,
            Some(text) => match text.parse::<u16>() {
                Ok(0) | Err(_) => return fail(format!("'{text}' is not a port (1-65535)")),
                Ok(port) => port,
            },
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
                None => (Some(info.to_string()), None),
            },
        };
        Ok(MqttUrl {
            host: host.to_string(),
            port,
            username,
            password,
            tls,
        })
    }

    /// The URL without credentials, as devices are told it.
    pub fn without_credentials(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_credentials_and_ipv6() {
        let url = MqttUrl::parse("mqtt://hub:secret@10.0.0.5:1884").unwrap();
        assert_eq!(
            url,
            MqttUrl {
                host: "10.0.0.5".into(),
                port: 1884,
                username: Some("hub".into()),
                password: Some("secret".into()),
                tls: false,
            }
        );
        assert_eq!(url.without_credentials(), "mqtt://10.0.0.5:1884");
        assert_eq!(MqttUrl::parse("tcp://broker/").unwrap().port, DEFAULT_PORT);
        let v6 = MqttUrl::parse("mqtt://[::1]:1885").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1885));
        assert_eq!(v6.without_credentials(), "mqtt://[::1]:1885");
        let tls = MqttUrl::parse("mqtts://broker").unwrap();
        assert_eq!((tls.tls, tls.port), (true, DEFAULT_TLS_PORT));
        assert_eq!(tls.without_credentials(), "mqtts://broker:8883");
        assert!(MqttUrl::parse("ssl://broker:1884").unwrap().tls);
    }

    #[test]
    fn refusals_name_the_problem() {
        let error = |url: &str| MqttUrl::parse(url).unwrap_err().to_string();
        assert_eq!(
            error("broker:1883"),
            "expected mqtt://host:port, got 'broker:1883'"
        );
        assert_eq!(
            error("wss://broker"),
            "scheme 'wss' is not supported by this build; use mqtt:// or mqtts://"
        );
        assert_eq!(
            error("http://broker"),
            "unknown scheme 'http'; expected mqtt://host:port or mqtts://host:port"
        );
        assert_eq!(
            error("mqtt://broker:99999"),
            "'99999' is not a port (1-65535)"
        );
        assert_eq!(error("mqtt://:1883"), "no host in 'mqtt://:1883'");
        assert_eq!(
            error("mqtt://broker/x"),
            "expected mqtt://host:port with no path or query, got 'mqtt://broker/x'"
        );
    }
}
