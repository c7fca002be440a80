//! Reading and writing the versioned TOML files: one line per error, the version checked
//! before the fields so an old or new file gets a message about its version.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Toml(String),
    #[error("version {found} is not supported (this roamgw reads versions up to {supported}); upgrade roamgw or restore a matching file")]
    Version { found: u32, supported: u32 },
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn invalid(message: impl Into<String>) -> StateError {
    StateError::Invalid(message.into())
}

/// One line out of a toml error (its Display spans several lines with a caret drawing).
fn toml_error_line(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// Checks the `version` field before anything else so an old or new file gets the right message.
fn check_version(text: &str, supported: RangeInclusive<u32>) -> Result<(), StateError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: Option<toml::Value>,
    }
    let newest = *supported.end();
    let probe: VersionOnly =
        toml::from_str(text).map_err(|e| StateError::Toml(toml_error_line(&e, text)))?;
    match probe.version {
        None => Err(invalid(format!("missing 'version = {newest}' at the top"))),
        Some(toml::Value::Integer(v)) if u32::try_from(v).is_ok_and(|v| supported.contains(&v)) => {
            Ok(())
        }
        Some(toml::Value::Integer(v)) => Err(StateError::Version {
            found: u32::try_from(v).unwrap_or(u32::MAX),
            supported: newest,
        }),
        Some(_) => Err(invalid(format!("'version' must be the number {newest}"))),
    }
}

/// Parses once (the state may be large); only a file that fails to parse is probed for its
/// version, so an old or new file gets a message about the version rather than a field.
pub(crate) fn parse_versioned<T: serde::de::DeserializeOwned>(
    text: &str,
    supported: RangeInclusive<u32>,
    version_of: impl Fn(&T) -> u32,
) -> Result<T, StateError> {
    match toml::from_str::<T>(text) {
        Ok(value) if supported.contains(&version_of(&value)) => Ok(value),
        Ok(value) => Err(StateError::Version {
            found: version_of(&value),
            supported: *supported.end(),
        }),
        Err(e) => {
            check_version(text, supported)?;
            Err(StateError::Toml(toml_error_line(&e, text)))
        }
    }
}

/// The file's text. Serializing plain data with string keys does not fail; if a future field
/// made it fail, the caller gets an error instead of a panic.
pub(crate) fn to_text<T: Serialize>(value: &T) -> Result<String, StateError> {
    toml::to_string(value).map_err(|e| StateError::Toml(format!("cannot write TOML: {e}")))
}
