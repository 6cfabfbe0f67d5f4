//! What validation knows about connectors: names, versions, actions and their
//! input schemas. The engine fills it from connector manifests.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One connector as validation sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorSpec {
    /// The connector's name, e.g. `http`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its actions.
    pub actions: Vec<ActionSpec>,
}

/// One action of a connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    /// The action's name.
    pub name: String,
    /// JSON Schema of its input.
    pub input_schema: Value,
    /// JSON Schema of its output: templates that read a field it does not
    /// have are refused.
    pub output_schema: Value,
}

/// The connectors a workflow may use.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    connectors: Vec<ConnectorSpec>,
}

impl Catalog {
    /// A catalog of these connectors.
    pub fn new(connectors: Vec<ConnectorSpec>) -> Self {
        Catalog { connectors }
    }

    /// The connector with this name (and version, when given). Without a
    /// version, the one listed last wins.
    pub fn find(&self, name: &str, version: Option<&str>) -> Option<&ConnectorSpec> {
        self.connectors.iter().rev().find(|c| c.name == name && version.is_none_or(|v| c.version == v))
    }

    /// Names of all connectors, for "did you mean" messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.connectors.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// A connector action as a step names it: `connector/action` or
/// `connector@version/action`. Parsed once, when a workflow loads; written
/// back exactly as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectorRef {
    /// The connector's name.
    pub connector: String,
    /// The pinned version, if any.
    pub version: Option<String>,
    /// The action's name.
    pub action: String,
}

impl ConnectorRef {
    /// Whether the connector `id` is one this reference may resolve to: the
    /// same name, and the same version when the reference pins one.
    pub fn matches(&self, id: &ConnectorId) -> bool {
        id.name == self.connector && self.version.as_ref().is_none_or(|v| *v == id.version)
    }
}

impl std::str::FromStr for ConnectorRef {
    type Err = String;

    /// Parses `connector[@version]/action`.
    fn from_str(text: &str) -> Result<ConnectorRef, String> {
        let (connector, action) =
            text.split_once('/').filter(|(c, a)| !c.is_empty() && !a.is_empty() && !a.contains('/')).ok_or_else(
                || format!("`uses` must look like `connector/action` or `connector@version/action`, got {text:?}"),
            )?;
        let (connector, version) = match connector.split_once('@') {
            Some((name, version)) if !name.is_empty() && !version.is_empty() => (name, Some(version.to_string())),
            Some(_) => return Err(format!("`uses` has an empty connector name or version: {text:?}")),
            None => (connector, None),
        };
        Ok(ConnectorRef { connector: connector.to_string(), version, action: action.to_string() })
    }
}

impl std::fmt::Display for ConnectorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}@{version}/{}", self.connector, self.action),
            None => write!(f, "{}/{}", self.connector, self.action),
        }
    }
}

/// One build's identity as a manifest gives it: `name@version`. Runs pin
/// connectors by it (with the build's digest), and a registry keys them by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectorId {
    /// The connector's name.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl ConnectorId {
    /// The id of `name` at `version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> ConnectorId {
        ConnectorId { name: name.into(), version: version.into() }
    }
}

impl std::str::FromStr for ConnectorId {
    type Err = String;

    /// Parses `name@version`.
    fn from_str(text: &str) -> Result<ConnectorId, String> {
        match text.split_once('@') {
            Some((name, version)) if !name.is_empty() && !version.is_empty() => Ok(ConnectorId::new(name, version)),
            _ => Err(format!("a connector id looks like `name@version`, got {text:?}")),
        }
    }
}

impl std::fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::{ConnectorId, ConnectorRef};

    #[test]
    fn a_reference_is_written_back_exactly_as_it_was_read() {
        for text in ["http/request", "http@1.2.0/request", "a@b@c/x"] {
            let parsed: ConnectorRef = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        let pinned: ConnectorRef = "http@1.2.0/request".parse().unwrap();
        assert!(pinned.matches(&"http@1.2.0".parse::<ConnectorId>().unwrap()));
        assert!(!pinned.matches(&ConnectorId::new("http", "1.3.0")));
        assert!("http/request".parse::<ConnectorRef>().unwrap().matches(&ConnectorId::new("http", "9")));
        for bad in ["http", "/x", "http/", "a/b/c", "@1/x", "http@/x"] {
            assert!(bad.parse::<ConnectorRef>().is_err(), "{bad}");
        }
        assert!("nover".parse::<ConnectorId>().is_err());
    }
}
