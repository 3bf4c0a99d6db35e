//! fer-edge: facial expression, valence and arousal on the edge.
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! image/frame ──> detect (MTCNN: box + eyes) ──> align (thesis §3.1)
//!             ──> emotion (bundle on an infer::Backend) ──> FaceReading
//! ```
//!
//! The daemon adds a source in front and tracking, smoothing and MQTT
//! behind:
//!
//! ```text
//! capture ──> faces ──> track (+ smooth) ──> publish (MQTT), ros2 (DDS)
//! ```
//!
//! `faces` wires the still-image stages for one frame; `analyze` runs them
//! over images; `eval` scores them on labelled sets; `pipeline` wires the daemon's threads; `calibrate` runs the
//! chain on a site's camera and reports what to change; `config` holds the
//! TOML, each section defined beside its stage.

pub mod align;
pub mod analyze;
pub mod annotate;
pub mod bench;
pub mod broker;
pub mod calibrate;
pub mod capture;
pub mod compare;
pub mod config;
pub mod detect;
pub mod emotion;
pub mod eval;
pub mod faces;
pub mod fileio;
pub mod fixed;
pub mod follow;
pub mod frame;
pub mod host;
pub mod imageio;
pub mod infer;
pub mod inspect;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod output;
pub mod page;
pub mod pem;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod report;
pub mod ros2;
pub mod run_id;
pub mod telemetry;
pub mod track;
