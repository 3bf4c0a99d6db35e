//! The whole TOML configuration: one section per stage, each stage's struct
//! living beside the stage it configures.
//!
//! In: TOML files, later ones overriding earlier ones (or nothing: every
//! key has a default). Out: a validated [`Config`]. Loading is two steps, as
//! in ripgrep: parse (unknown keys are rejected by name) and validate
//! (values checked, no system calls); then [`Config::locate_models`] points
//! the model paths at real files (beside the config file that set them,
//! installed, or in the working directory); the stages open them. Other relative paths are relative to the working directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::align::AlignConfig;
use crate::capture::SourceConfig;
use crate::detect::DetectorConfig;
use crate::emotion::calibration::CalibrationConfig;
use crate::emotion::EmotionConfig;
use crate::infer::InferenceConfig;
use crate::metrics::MetricsConfig;
use crate::publish::homeassistant::HomeAssistantConfig;
use crate::publish::MqttConfig;
use crate::ros2::Ros2Config;
use crate::track::core::FollowConfig;
use crate::track::smooth::SmoothingConfig;
use crate::track::TrackerConfig;

/// The configuration of a fer-edge process.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub inference: InferenceConfig,
    pub detector: DetectorConfig,
    pub follow: FollowConfig,
    pub align: AlignConfig,
    pub emotion: EmotionConfig,
    pub tracker: TrackerConfig,
    pub smoothing: SmoothingConfig,
    pub mqtt: MqttConfig,
    pub homeassistant: HomeAssistantConfig,
    pub ros2: Ros2Config,
    pub metrics: MetricsConfig,
    pub calibration: CalibrationConfig,
}

/// Which config file set each model path (`None`: no file, the default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOrigins {
    pub detector: Option<PathBuf>,
    pub emotion: Option<PathBuf>,
    /// The file that set `[source] path`.
    pub source: Option<PathBuf>,
}

/// One config file's text as a table, with moved keys at their new place
/// (one deprecation warning each), checked for unknown keys and types
/// (errors name `origin` and point at the file's own lines unless keys
/// moved), and as the [`Config`] it describes alone.
fn read_file(text: &str, origin: &Path) -> Result<(toml::Table, Config), ConfigError> {
    let err = |e: &dyn std::fmt::Display| ConfigError::Parse {
        path: origin.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| err(&e))?;
    let moved = move_deprecated_in_table(&mut table);
    for warning in &moved {
        tracing::warn!("config {}: {warning}", crate::fileio::shown(origin));
    }
    let cfg = if moved.is_empty() {
        toml::from_str(text)
    } else {
        toml::from_str(&toml::to_string(&table).map_err(|e| err(&e))?)
    }
    .map_err(|e| err(&e))?;
    Ok((table, cfg))
}

/// Keys that changed section: (old section, old key, new section path, new key).
const MOVED_KEYS: [(&str, &str, &[&str], &str); 5] = [
    ("detector", "interval", &["follow"], "interval"),
    ("detector", "follow_threshold", &["follow"], "threshold"),
    ("detector", "background", &["follow"], "background"),
    ("mqtt", "embedded", &["mqtt", "broker"], "embedded"),
    ("mqtt", "listen", &["mqtt", "broker"], "listen"),
];

/// Moves the keys of [`MOVED_KEYS`] to their new place in one file's
/// table (a key already at the new place in the same file wins); one
/// deprecation warning per key moved.
fn move_deprecated_in_table(table: &mut toml::Table) -> Vec<String> {
    let mut warnings = Vec::new();
    for (section, key, to, new_key) in MOVED_KEYS {
        let Some(v) = table
            .get_mut(section)
            .and_then(|s| s.as_table_mut())
            .and_then(|s| s.remove(key))
        else {
            continue;
        };
        match table_at(table, to) {
            Some(dest) => {
                dest.entry(new_key.to_string()).or_insert(v);
            }
            // The new place is not a table: the type check reports that.
            None => continue,
        }
        warnings.push(format!(
            "[{section}] {key} is deprecated: it is read, but write it as `{new_key}` under [{}]",
            to.join(".")
        ));
    }
    warnings
}

/// The table at `path` below `t`, made where missing; None when something
/// on the way is not a table.
fn table_at<'a>(t: &'a mut toml::Table, path: &[&str]) -> Option<&'a mut toml::Table> {
    match path.split_first() {
        None => Some(t),
        Some((first, rest)) => {
            let next = t
                .entry(first.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table_at(next.as_table_mut()?, rest)
        }
    }
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file: {0}")]
    Read(crate::fileio::ReadError),
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] crate::models::ModelFileError),
}

impl Config {
    /// Parses and validates TOML text; `origin` is only used in messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let (_, mut cfg) = read_file(text, origin)?;
        // A ROS 2 camera is read on the domain [ros2] names.
        cfg.source.dds = cfg.ros2.clone();
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: origin.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    /// Reads several config files, later ones overriding earlier ones key
    /// by key (`fer-edge run --config base.toml --config calibration.toml`).
    /// Each file is checked alone for unknown keys and types (errors name
    /// that file), then the merged result is validated. Returns the config
    /// and, for each model path, the file that set it (relative model paths
    /// are looked for beside that file).
    pub fn load_layered(paths: &[PathBuf]) -> Result<(Config, ModelOrigins), ConfigError> {
        let mut merged = toml::Table::new();
        let mut origins = ModelOrigins::default();
        for path in paths {
            let text = crate::fileio::read_text_bounded(
                path,
                crate::fileio::CONFIG_LIMIT,
                "a config file",
            )
            .map_err(ConfigError::Read)?;
            // Moved keys go to their new place in each file before the
            // files are merged, so that a later file's key wins whichever
            // place either file used.
            let (table, _) = read_file(&text, path)?;
            let sets = |section: &str, key: &str| {
                table
                    .get(section)
                    .and_then(|s| s.as_table())
                    .is_some_and(|s| s.contains_key(key))
            };
            if sets("detector", "model_dir") || origins.detector.is_none() {
                origins.detector = Some(path.clone());
            }
            if sets("emotion", "model") || origins.emotion.is_none() {
                origins.emotion = Some(path.clone());
            }
            if sets("source", "path") {
                origins.source = Some(path.clone());
            }
            merge_tables(&mut merged, table);
        }
        let shown = PathBuf::from(
            paths
                .iter()
                .map(|p| crate::fileio::shown(p))
                .collect::<Vec<_>>()
                .join(" + "),
        );
        let text = toml::to_string(&merged).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        Ok((Config::parse(&text, &shown)?, origins))
    }

    /// Points the model paths at the files they name (the second, system
    /// step of loading): see `models` for the places tried, starting beside
    /// the config file that set each path. A relative replay path missing
    /// from the working directory is looked for beside its config file too.
    pub fn locate_models(&mut self, origins: &ModelOrigins) -> Result<(), ConfigError> {
        let dir = |f: &Option<PathBuf>| f.as_deref().and_then(Path::parent).map(Path::to_path_buf);
        let (d, e) = (dir(&origins.detector), dir(&origins.emotion));
        self.detector.model_dir = crate::models::locate(
            "[detector] model_dir",
            &self.detector.model_dir,
            d.as_deref(),
        )?;
        self.emotion.model =
            crate::models::locate("[emotion] model", &self.emotion.model, e.as_deref())?;
        // A relative replay path is the working directory's; one that is not
        // there is looked for beside the config file that set it and in the
        // folder above (the repository's example config runs from anywhere).
        if let (Some(p), Some(dir)) = (self.source.path.clone(), dir(&origins.source)) {
            if p.is_relative() && !p.exists() {
                let found = crate::models::beside_config(&p, &dir)
                    .into_iter()
                    .find(|c| c.exists());
                if let Some(f) = found {
                    self.source.path = Some(f);
                }
            }
        }
        Ok(())
    }

    /// Checks every section's values.
    pub fn validate(&self) -> Result<(), String> {
        self.source.validate()?;
        self.inference.validate()?;
        self.detector.validate()?;
        self.follow.validate()?;
        self.align.validate()?;
        self.emotion.validate()?;
        self.tracker.validate()?;
        self.smoothing.validate()?;
        self.mqtt.validate()?;
        self.homeassistant.validate()?;
        self.ros2.validate()?;
        self.metrics.validate()?;
        self.calibration.validate()?;
        self.validate_gpu_request()?;
        Ok(())
    }

    /// The engine of the detector and of the emotion model.
    pub fn stage_backends(&self) -> [(&'static str, &str); 2] {
        let default = self.inference.backend.as_str();
        [
            (
                "detector",
                self.detector.backend.as_deref().unwrap_or(default),
            ),
            (
                "emotion",
                self.emotion.backend.as_deref().unwrap_or(default),
            ),
        ]
    }

    /// `require_gpu` needs at least one stage on an engine that can use one.
    fn validate_gpu_request(&self) -> Result<(), String> {
        if !self.inference.require_gpu {
            return Ok(());
        }
        let gpu_capable =
            |b: &str| b == "cuda" || (b == "onnxruntime" && self.inference.wants_gpu_provider());
        if self.stage_backends().iter().any(|(_, b)| gpu_capable(b)) {
            Ok(())
        } else {
            Err(format!(
                "inference.require_gpu = true, but no stage asks for a GPU (detector: {}, emotion: {}, providers: {:?}): use backend = \"onnxruntime\" with providers = [\"tensorrt\", \"cuda\", \"cpu\"], or backend = \"cuda\"",
                self.stage_backends()[0].1,
                self.stage_backends()[1].1,
                self.inference.providers.iter().map(|p| p.name()).collect::<Vec<_>>()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses_and_equals_the_defaults_but_for_its_looping_replay() {
        let text = include_str!("../config/fer-edge.toml");
        let mut cfg = Config::parse(text, Path::new("config/fer-edge.toml")).unwrap();
        assert!(cfg.source.path.is_some() && cfg.source.loop_);
        cfg.source.path = None;
        cfg.source.loop_ = false;
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn the_packaged_config_is_the_example_with_a_camera_as_source() {
        let text = include_str!("../config/fer-edge.installed.toml");
        let mut cfg = Config::parse(text, Path::new("config/fer-edge.installed.toml")).unwrap();
        assert_eq!(cfg.source.kind, crate::capture::SourceKind::V4l2);
        assert_eq!(cfg.source.path, None);
        cfg.source.kind = crate::capture::SourceKind::Replay;
        assert_eq!(cfg, Config::default());
    }

    /// Every key that becomes a period, a deadline or a rate, at values
    /// that parse as numbers but round to zero or to infinity as a
    /// `Duration`: each is refused by validation (`check` and `run` exit
    /// 78), never accepted to panic later (`period must be non-zero`).
    #[test]
    fn every_duration_and_rate_key_refuses_values_no_timer_can_hold() {
        let keys = [
            ("mqtt", "stats_interval_s"),
            ("mqtt", "reconnect_max_backoff_s"),
            ("mqtt", "max_rate_hz"),
            ("mqtt", "summary_rate_hz"),
            ("source", "fps"),
            ("source", "reopen_max_backoff_s"),
            ("follow", "expression_rate_hz"),
            ("tracker", "max_age_s"),
            ("smoothing", "va_tau_s"),
            ("smoothing", "probabilities_tau_s"),
        ];
        for (section, key) in keys {
            for v in ["1e-300", "1e300", "-1.0", "nan", "inf"] {
                let text = format!("[{section}]\n{key} = {v}\n");
                // Refused when parsed (validation is part of it) or after.
                let verdict = Config::parse(&text, Path::new("t.toml"))
                    .map_err(|e| e.to_string())
                    .and_then(|cfg| cfg.validate());
                let tiny_but_harmless = v == "1e-300"
                    && matches!(key, "max_age_s" | "va_tau_s" | "probabilities_tau_s");
                if tiny_but_harmless {
                    continue;
                }
                let e = verdict.expect_err(&format!("{section}.{key} = {v} was accepted"));
                assert!(e.contains(key), "{section}.{key} = {v}: {e}");
            }
        }
    }

    #[test]
    fn every_section_rejects_unknown_keys() {
        for section in [
            "source",
            "inference",
            "inference.tensorrt",
            "detector",
            "follow",
            "align",
            "emotion",
            "tracker",
            "smoothing",
            "mqtt",
            "mqtt.tls",
            "mqtt.broker",
            "homeassistant",
            "ros2",
            "metrics",
            "calibration",
        ] {
            let err = Config::parse(
                &format!("[{section}]\nbogus_key = 1\n"),
                Path::new("x.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("bogus_key"), "{section}: {err}");
        }
    }

    #[test]
    fn a_later_file_wins_whichever_place_each_file_wrote_a_moved_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let old = file(
            "old.toml",
            "[mqtt]\nlisten = \"127.0.0.1:1884\"\n[detector]\ninterval = 4\n",
        );
        let new = file(
            "new.toml",
            "[mqtt.broker]\nlisten = \"127.0.0.1:1885\"\n[follow]\ninterval = 6\n",
        );
        let (c, _) = Config::load_layered(&[old.clone(), new.clone()]).unwrap();
        assert_eq!((c.mqtt.broker.listen.port(), c.follow.interval), (1885, 6));
        let (c, _) = Config::load_layered(&[new, old]).unwrap();
        assert_eq!((c.mqtt.broker.listen.port(), c.follow.interval), (1884, 4));
    }

    #[test]
    fn the_broker_keys_that_lived_under_mqtt_still_work_and_say_where_they_live_now() {
        let mut table: toml::Table = "[mqtt]\nembedded = false\nlisten = \"0.0.0.0:1884\"\n"
            .parse()
            .unwrap();
        let warnings = move_deprecated_in_table(&mut table);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("[mqtt.broker]") && warnings[1].contains("listen"));
        let cfg = Config::parse(&toml::to_string(&table).unwrap(), Path::new("x.toml")).unwrap();
        assert!(!cfg.mqtt.broker.embedded);
        assert_eq!(cfg.mqtt.broker.listen.to_string(), "0.0.0.0:1884");
        let parsed = Config::parse(
            "[mqtt]\nembedded = false\nlisten = \"0.0.0.0:1884\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(parsed.mqtt, cfg.mqtt);
        // The new place, parsed once; a bad address names its key and shows a good one.
        let c = Config::parse(
            "[mqtt.broker]\nlisten = \"127.0.0.1:1999\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.mqtt.broker.listen.port(), 1999);
        let e = Config::parse("[mqtt.broker]\nlisten = \"nowhere\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen") && e.contains("127.0.0.1:1883"), "{e}");
        let e = Config::parse("[mqtt]\nlisten = \"nowhere\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mqtt.broker.listen"), "{e}");
    }

    #[test]
    fn the_follow_keys_that_lived_under_detector_still_work_and_say_where_they_live_now() {
        let mut table: toml::Table =
            "[detector]\ninterval = 4\nfollow_threshold = 0.5\nbackground = false\n"
                .parse()
                .unwrap();
        let warnings = move_deprecated_in_table(&mut table);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[1].contains("[follow]") && warnings[1].contains("threshold"));
        let cfg = Config::parse(&toml::to_string(&table).unwrap(), Path::new("x.toml")).unwrap();
        assert_eq!(
            cfg.follow,
            FollowConfig {
                interval: 4,
                threshold: 0.5,
                background: false,
                ..FollowConfig::default()
            }
        );
        assert_eq!(cfg.detector, DetectorConfig::default());
        // Through the loader too, and a bad value still names its key.
        let parsed = Config::parse("[detector]\ninterval = 7\n", Path::new("x.toml")).unwrap();
        assert_eq!(parsed.follow.interval, 7);
        let e = Config::parse("[detector]\ninterval = 5000\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("follow.interval"), "{e}");
    }

    #[test]
    fn an_unknown_key_is_rejected_by_name() {
        let err = Config::parse("[detector]\nmin_face = 30\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("min_face") && err.contains("x.toml"), "{err}");
    }

    #[test]
    fn an_out_of_range_value_is_rejected_with_its_key() {
        let err = Config::parse("[detector]\nmin_face_size = 2\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("detector.min_face_size"), "{err}");
    }

    #[test]
    fn an_unknown_backend_is_rejected_with_the_alternatives() {
        let err = Config::parse("[inference]\nbackend = \"trt\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trt") && err.contains("onnxruntime"), "{err}");
        let err = Config::parse("[emotion]\nbackend = \"gpu\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("emotion.backend"), "{err}");
    }

    #[test]
    fn each_stage_may_name_its_own_engine_and_defaults_to_the_inference_one() {
        let cfg = Config::parse(
            "[inference]\nbackend = \"onnxruntime\"\n[detector]\nbackend = \"tract\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(
            cfg.stage_backends(),
            [("detector", "tract"), ("emotion", "onnxruntime")]
        );
    }

    #[test]
    fn require_gpu_without_any_gpu_engine_is_refused_at_load() {
        let err = Config::parse("[inference]\nrequire_gpu = true\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("require_gpu") && err.contains("no stage asks for a GPU"),
            "{err}"
        );
        Config::parse(
            "[inference]\nrequire_gpu = true\nbackend = \"onnxruntime\"\nproviders = [\"cuda\", \"cpu\"]\n",
            Path::new("x.toml"),
        )
        .unwrap();
    }

    #[test]
    fn a_later_config_file_overrides_an_earlier_one_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.toml");
        let over = dir.path().join("calibration.toml");
        std::fs::write(
            &base,
            "[detector]\nmin_face_size = 20.0\n[follow]\ninterval = 5\n[mqtt]\ndevice_id = \"k\"\n",
        )
        .unwrap();
        std::fs::write(
            &over,
            "# why: smallest face seen was 61 px\n[detector]\nmin_face_size = 48.0\n",
        )
        .unwrap();
        let (cfg, origins) = Config::load_layered(&[base.clone(), over.clone()]).unwrap();
        assert_eq!(cfg.detector.min_face_size, 48.0);
        assert_eq!(cfg.follow.interval, 5);
        assert_eq!(cfg.mqtt.device_id, "k");
        assert_eq!(origins.detector, Some(base.clone()));
        // A bad key names the file it is in; a bad merged value names both.
        std::fs::write(&over, "[detector]\nmin_face = 48.0\n").unwrap();
        let e = Config::load_layered(&[base.clone(), over.clone()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("calibration.toml") && e.contains("min_face"),
            "{e}"
        );
        std::fs::write(&over, "[detector]\nmin_face_size = 2.0\n").unwrap();
        let e = Config::load_layered(&[base, over]).unwrap_err().to_string();
        assert!(
            e.contains("base.toml + ") && e.contains("detector.min_face_size"),
            "{e}"
        );
    }

    #[test]
    fn a_metrics_address_that_is_not_one_names_the_key() {
        let err = Config::parse("[metrics]\nlisten = \"localhost\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen") && err.contains("x.toml"), "{err}");
    }

    #[test]
    fn four_detector_thresholds_are_refused_not_truncated() {
        let err = Config::parse(
            "[detector]\nthresholds = [0.6, 0.7, 0.7, 0.7]\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("exactly 3 values"), "{err}");
        assert!(
            Config::parse("[detector]\nthresholds = [0.6, 0.7]\n", Path::new("x.toml")).is_err()
        );
        let err = Config::parse(
            "[calibration]\nclass_bias = [0.0, 0.1]\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("exactly 7 values") && err.contains("class_bias"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_provider_is_rejected_by_name() {
        let err = Config::parse("[inference]\nproviders = [\"rocm\"]\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rocm"), "{err}");
    }
}
