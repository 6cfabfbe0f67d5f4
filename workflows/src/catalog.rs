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

/// A parsed `uses` value: `connector/action` or `connector@version/action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uses {
    /// The connector's name.
    pub connector: String,
    /// The pinned version, if any.
    pub version: Option<String>,
    /// The action's name.
    pub action: String,
}

impl Uses {
    /// Parses `connector[@version]/action`.
    pub fn parse(text: &str) -> Result<Uses, String> {
        let (connector, action) =
            text.split_once('/').filter(|(c, a)| !c.is_empty() && !a.is_empty() && !a.contains('/')).ok_or_else(
                || format!("`uses` must look like `connector/action` or `connector@version/action`, got {text:?}"),
            )?;
        let (connector, version) = match connector.split_once('@') {
            Some((name, version)) if !name.is_empty() && !version.is_empty() => (name, Some(version.to_string())),
            Some(_) => return Err(format!("`uses` has an empty connector name or version: {text:?}")),
            None => (connector, None),
        };
        Ok(Uses { connector: connector.to_string(), version, action: action.to_string() })
    }
}
