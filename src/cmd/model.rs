//! `fer-edge model …`: inspect, run, compare and align with bundles.

use std::process::ExitCode;

use super::exit::{self, Failure};
use super::load_config;
use crate::cmd::cli::ModelCommand;

pub fn command(cmd: ModelCommand) -> Result<ExitCode, Failure> {
    match cmd {
        ModelCommand::Inspect { bundle } => {
            print!(
                "{}",
                fer_edge::inspect::inspect(&bundle).map_err(exit::config)?
            );
        }
        ModelCommand::Run {
            bundle,
            aligned,
            backend,
        } => {
            let backend =
                fer_edge::infer::backend(&backend, &Default::default()).map_err(exit::config)?;
            let v = fer_edge::inspect::run_aligned(&bundle, &aligned, backend.as_ref())
                .map_err(exit::config)?;
            println!("{v}");
        }
        ModelCommand::Compare {
            engines,
            image,
            bundle,
            config,
            runs,
            json,
        } => {
            let cfg = load_config(&config.files, None)?;
            let opts = fer_edge::compare::CompareOptions {
                engines: engines.split(',').map(|e| e.trim().to_string()).collect(),
                image,
                bundles: if bundle.is_empty() {
                    vec![cfg.emotion.model.clone()]
                } else {
                    bundle
                },
                runs: runs.max(1),
                inference: cfg.inference.clone(),
                detector: cfg.detector.clone(),
            };
            let report = fer_edge::compare::run(&opts).map_err(exit::config)?;
            if json {
                println!("{}", serde_json::to_string(&report).map_err(exit::config)?);
            } else {
                print!("{}", fer_edge::compare::text(&report));
            }
        }
        ModelCommand::Align {
            image,
            left,
            right,
            size,
            eye_distance,
            eye_line,
            out,
        } => {
            let img = fer_edge::imageio::decode(&image)
                .map_err(|reason| exit::usage(format!("{}: {reason}", image.display())))?;
            let framing = fer_edge::align::Framing {
                width: size,
                height: size,
                eye_distance,
                eye_line,
            };
            let eyes = fer_edge::frame::Landmarks {
                left_eye: left,
                right_eye: right,
                ..Default::default()
            };
            let (crop, _) = fer_edge::align::align(&img, &eyes, &framing).map_err(exit::usage)?;
            crop.save(&out)
                .map_err(|e| (exit::EX_CANTCREAT, format!("{}: {e}", out.display()).into()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
