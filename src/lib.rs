//! fer-edge: facial expression, valence and arousal on the edge.
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! image/frame ──> detect (MTCNN: box + eyes) ──> align (thesis §3.1)
//!             ──> emotion (bundle on an infer::Backend) ──> FaceReading
//! ```
//!
//! `faces` wires those stages for one frame; `analyze` runs them over still
//! images; `config` holds the TOML, each section defined beside its stage.

pub mod align;
pub mod analyze;
pub mod annotate;
pub mod config;
pub mod detect;
pub mod emotion;
pub mod faces;
pub mod frame;
pub mod infer;
pub mod models;
