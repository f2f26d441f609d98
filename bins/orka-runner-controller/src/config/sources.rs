//! Collects raw setting values from the three sources and remembers where each came from:
//! the config file (lowest), the `.env` file, the process environment (highest).
//!
//! The environment is passed in as a map (tests never mutate the real environment). The
//! layering itself goes through the `config` crate; this module owns reading the `.env`
//! file, filtering the environment to known names and checking config-file keys. It does
//! not parse values (see `values`) or decide defaults (see `build`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::dotenv;
use super::error::Problem;
use super::redact;
use super::settings;

/// Which `.env` file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFile {
    /// Read it if it exists (the default `./.env`, like the Go integration).
    Optional(PathBuf),
    /// Read it; a missing file is a configuration error (`--env-file`).
    Required(PathBuf),
    /// Read no `.env` file.
    Skip,
}

/// Where configuration is read from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Snapshot of the process environment.
    pub environment: BTreeMap<String, String>,
    /// The `.env` file.
    pub env_file: EnvFile,
    /// The config file (`--config`), TOML or YAML by extension.
    pub config_file: Option<PathBuf>,
}

impl Sources {
    /// The real process environment, `./.env` unless `env_file` is given, and `config_file`.
    pub fn from_process(env_file: Option<PathBuf>, config_file: Option<PathBuf>) -> Self {
        let environment = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let env_file = match env_file {
            Some(path) => EnvFile::Required(path),
            None => EnvFile::Optional(PathBuf::from(".env")),
        };
        Self { environment, env_file, config_file }
    }

    /// Only the given environment map: no `.env`, no config file (tests).
    pub fn environment_only(environment: BTreeMap<String, String>) -> Self {
        Self { environment, env_file: EnvFile::Skip, config_file: None }
    }
}

/// Where one value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// The process environment.
    Environment,
    /// The `.env` file.
    EnvFile,
    /// The config file.
    ConfigFile,
}

/// A `[[scale_sets]]` entry of the config file, unvalidated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScaleSet {
    /// Scale set name.
    pub name: String,
    /// Runner group id (`id` accepted, as in `RUNNERS`).
    #[serde(default, alias = "id")]
    pub runner_group_id: Option<u64>,
    /// Labels in addition to the name.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// VM config deployed for this scale set.
    #[serde(default)]
    pub vm_config: Option<String>,
    /// Orka namespace for this scale set's VMs.
    #[serde(default)]
    pub orka_namespace: Option<String>,
    /// VM metadata: `"k=v,k2=v2"` or a table.
    #[serde(default)]
    pub metadata: Option<RawMetadata>,
    /// Warm pool size.
    #[serde(default)]
    pub min_runners: Option<u32>,
    /// VM cap.
    #[serde(default)]
    pub max_runners: Option<u32>,
    /// Idle grace, Go duration syntax.
    #[serde(default)]
    pub runner_idle_grace: Option<String>,
}

/// Metadata as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawMetadata {
    /// `"k=v,k2=v2"`, like `ORKA_VM_METADATA`.
    Text(String),
    /// `{ k = "v" }`.
    Table(BTreeMap<String, String>),
}

/// Raw values by setting name, with provenance, plus the file's scale sets.
#[derive(Debug, Default)]
pub struct Layered {
    values: BTreeMap<String, (String, Provenance)>,
    /// `[[scale_sets]]` from the config file, if any.
    pub scale_sets: Option<Vec<RawScaleSet>>,
    /// Problems found while reading the sources.
    pub problems: Vec<Problem>,
    /// Notes worth a log line (e.g. an ignored value).
    pub notes: Vec<String>,
    /// Variables whose `.env` statement could not be parsed: a missing value for them is
    /// already explained, so "is required" would only mislead.
    pub unparsed: BTreeSet<String>,
    /// The `.env` file could not be read at all: every "is required" may be its fault.
    pub env_file_unreadable: bool,
}

impl Layered {
    /// The raw value of `name` (upper-case variable name), empty values counting as unset.
    pub fn get(&self, name: &str) -> Option<(&str, &Provenance)> {
        self.values.get(name).map(|(v, p)| (v.as_str(), p))
    }

    /// How to name `name` in an error message, given where its value came from.
    pub fn label(&self, name: &str) -> String {
        match self.values.get(name).map(|(_, p)| p) {
            Some(Provenance::ConfigFile) => {
                format!("{} (config file key {})", name, name.to_ascii_lowercase())
            }
            Some(Provenance::EnvFile) => format!("{name} (from the .env file)"),
            _ => name.to_owned(),
        }
    }
}

/// Reads all sources. Never fails: problems are collected in [`Layered::problems`].
pub fn read(sources: &Sources) -> Layered {
    let mut layered = Layered::default();
    let mut env: BTreeMap<String, (String, Provenance)> = BTreeMap::new();
    match &sources.env_file {
        EnvFile::Skip => {}
        // Only a path that is not there at all is skipped: a dangling symlink is reported.
        EnvFile::Optional(path) if std::fs::symlink_metadata(path).is_err() => {}
        EnvFile::Optional(path) => {
            let label = format!(".env file {}", path.display());
            read_env_file(path, &label, &sources.environment, &mut env, &mut layered);
        }
        EnvFile::Required(path) => {
            let label = format!("--env-file {}", path.display());
            read_env_file(path, &label, &sources.environment, &mut env, &mut layered);
        }
    }
    for (name, value) in &sources.environment {
        env.insert(name.clone(), (value.clone(), Provenance::Environment));
    }
    // Empty means unset (a Go `.env` often has `NAME=`); unknown names are not ours.
    env.retain(|name, (value, _)| !value.trim().is_empty() && settings::is_known_variable(name));

    let mut builder = config::Config::builder();
    let mut config_text = String::new();
    if let Some(path) = &sources.config_file {
        match read_config_file(path) {
            Ok((file, text)) => {
                builder = builder.add_source(file);
                config_text = text;
            }
            Err(reason) => {
                layered.problems.push(Problem::new("--config", reason));
                return layered;
            }
        }
    }
    // No prefix and no separator: `ORKA_VM_CONFIG` is the flat key `orka_vm_config`, never
    // a nested `orka.vm.config` (see the separator test).
    let env_map = env.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect();
    builder = builder.add_source(config::Environment::default().source(Some(env_map)));
    let table = match builder.build().and_then(|c| c.try_deserialize::<BTreeMap<String, config::Value>>()) {
        Ok(table) => table,
        Err(e) => {
            let file = sources.config_file.as_deref().map_or_else(String::new, |p| p.display().to_string());
            let reason = redact::parse_error(&e.to_string(), &config_text);
            layered
                .problems
                .push(Problem::new("--config", format!("cannot read config file {file}: {reason}")));
            return layered;
        }
    };

    for (key, value) in table {
        let upper = key.to_ascii_uppercase();
        let provenance = match env.get(&upper) {
            Some((_, provenance)) => provenance.clone(),
            None => Provenance::ConfigFile,
        };
        if key == "scale_sets" && provenance == Provenance::ConfigFile {
            match value.try_deserialize::<Vec<RawScaleSet>>() {
                Ok(sets) => layered.scale_sets = Some(sets),
                Err(e) => layered.problems.push(Problem::new("scale_sets (config file)", e.to_string())),
            }
            continue;
        }
        if provenance == Provenance::ConfigFile && key != key.to_ascii_lowercase() {
            layered.problems.push(Problem::new(
                format!("{key} (config file)"),
                format!("config file keys are lower case: write {}", key.to_ascii_lowercase()),
            ));
            continue;
        }
        if !settings::is_known_variable(&upper) {
            layered.problems.push(Problem::new(format!("{key} (config file)"), "is not a known setting"));
            continue;
        }
        match value.into_string() {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => {
                layered.values.insert(upper, (text, provenance));
            }
            Err(_) => layered.problems.push(Problem::new(
                format!("{key} (config file)"),
                "must be a single value (string, number or boolean)",
            )),
        }
    }
    layered
}

/// A config file's text as a `config` source.
type ConfigFileSource = config::File<config::FileSourceString, config::FileFormat>;

/// The config file as a `config` source, its format chosen by extension, and its text.
/// The text is read here (not by the `config` crate) so that odd files are refused, not
/// waited on, and so that parse errors can be scrubbed of it.
fn read_config_file(path: &Path) -> Result<(ConfigFileSource, String), String> {
    let format = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("toml") => config::FileFormat::Toml,
        Some("yaml" | "yml") => config::FileFormat::Yaml,
        _ => return Err(format!("{} must end in .toml, .yaml or .yml", path.display())),
    };
    let text = super::files::read_regular_file(path)?;
    Ok((config::File::from_str(&text, format).required(true), text))
}

/// At most this many `.env` parse errors are listed; the rest are counted.
const MAX_LISTED_PARSE_ERRORS: usize = 10;

fn read_env_file(
    path: &Path,
    label: &str,
    environment: &BTreeMap<String, String>,
    env: &mut BTreeMap<String, (String, Provenance)>,
    layered: &mut Layered,
) {
    let text = match super::files::read_regular_file(path) {
        Ok(text) => text,
        Err(reason) => {
            layered.problems.push(Problem::new(label, reason));
            layered.env_file_unreadable = true;
            return;
        }
    };
    let parsed = dotenv::parse(&text, environment);
    for (name, value) in parsed.pairs {
        env.insert(name, (value, Provenance::EnvFile));
    }
    layered.unparsed.extend(parsed.errors.iter().filter_map(|e| e.name.clone()));
    let unlisted = parsed.errors.len().saturating_sub(MAX_LISTED_PARSE_ERRORS);
    for e in parsed.errors.into_iter().take(MAX_LISTED_PARSE_ERRORS) {
        // Never echo the text: it may hold a secret.
        let reason = match &e.name {
            Some(name) => format!("{} (variable {name}); the value is not shown", e.reason),
            None => format!("{}; the line is not shown", e.reason),
        };
        layered.problems.push(Problem::new(format!("{}:{}", path.display(), e.line), reason));
    }
    if unlisted > 0 {
        layered.problems.push(Problem::new(label, format!("{unlisted} more lines cannot be parsed")));
    }
}
