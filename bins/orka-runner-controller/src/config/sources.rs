//! Collects raw setting values from the three sources and remembers where each came from:
//! the config file (lowest), the `.env` file, the process environment (highest).
//!
//! The environment is passed in as a map (tests never mutate the real environment). The
//! layering itself goes through the `config` crate; this module owns reading the `.env`
//! file, filtering the environment to known names and checking config-file keys. It does
//! not parse values (see `values`) or decide defaults (see `build`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::dotenv;
use super::error::Problem;
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
        EnvFile::Optional(path) if !path.exists() => {}
        EnvFile::Optional(path) | EnvFile::Required(path) => {
            read_env_file(path, &sources.environment, &mut env, &mut layered.problems);
        }
    }
    for (name, value) in &sources.environment {
        env.insert(name.clone(), (value.clone(), Provenance::Environment));
    }
    // Empty means unset (a Go `.env` often has `NAME=`); unknown names are not ours.
    env.retain(|name, (value, _)| !value.trim().is_empty() && settings::is_known_variable(name));

    let mut builder = config::Config::builder();
    if let Some(path) = &sources.config_file {
        if !path.exists() {
            layered
                .problems
                .push(Problem::new("--config", format!("file {} does not exist", path.display())));
            return layered;
        }
        builder = builder.add_source(config::File::from(path.as_path()).required(true));
    }
    // No prefix and no separator: `ORKA_VM_CONFIG` is the flat key `orka_vm_config`, never
    // a nested `orka.vm.config` (see the separator test).
    let env_map = env.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect();
    builder = builder.add_source(config::Environment::default().source(Some(env_map)));
    let table = match builder.build().and_then(|c| c.try_deserialize::<BTreeMap<String, config::Value>>()) {
        Ok(table) => table,
        Err(e) => {
            let file = sources.config_file.as_deref().map_or_else(String::new, |p| p.display().to_string());
            layered.problems.push(Problem::new("--config", format!("cannot read config file {file}: {e}")));
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

fn read_env_file(
    path: &Path,
    environment: &BTreeMap<String, String>,
    env: &mut BTreeMap<String, (String, Provenance)>,
    problems: &mut Vec<Problem>,
) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(Problem::new("--env-file", format!("cannot read {}: {e}", path.display())));
            return;
        }
    };
    match dotenv::parse(&text, environment) {
        Ok(pairs) => {
            for (name, value) in pairs {
                env.insert(name, (value, Provenance::EnvFile));
            }
        }
        Err(e) => {
            // Never echo the text: it may hold a secret.
            let name = e.name.map_or_else(String::new, |n| format!(" ({n})"));
            problems.push(Problem::new(
                format!(".env file {}", path.display()),
                format!("line {}{name}: {}", e.line, e.reason),
            ));
        }
    }
}
