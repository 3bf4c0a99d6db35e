//! The `fer-edge` binary: parse the command line, run the command (see
//! `cmd`), print the error chain once, and exit with the command's code
//! (every code is defined in `cmd::exit`).

use std::process::ExitCode;

use clap::Parser;

mod cmd;

fn main() -> ExitCode {
    // Before any thread: engines send no telemetry and write no device id.
    fer_edge::infer::turn_off_engine_telemetry();
    fer_edge::capture::keep_gstreamer_out_of_home();
    let cli = cmd::cli::Cli::parse();
    fer_edge::logging::init(&fer_edge::logging::LogEnv::from_process());
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err((code, err)) => {
            eprintln!("error: {err}");
            // Each cause once: a wrapper that already quotes its source's
            // text (`face detector: <source>`) does not repeat it.
            let mut shown = err.to_string();
            let mut source = err.source();
            while let Some(s) = source {
                let text = s.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown = text;
                }
                source = s.source();
            }
            ExitCode::from(code)
        }
    }
}
