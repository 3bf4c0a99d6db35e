//! Every exit code of `fer-edge`, in one place, and which error gets which.
//!
//! The same cause gives the same code in every command (sysexits.h names):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | done, but some inputs failed or the result names a problem (`analyze`, `eval`, `calibrate`, `bench`) |
//! | 2 | usage: bad arguments (clap), or an argument naming something unusable (a data set, a frames folder, an image) |
//! | 69 | `EX_UNAVAILABLE`: a source, broker, port or camera cannot be reached (a retry may help) |
//! | 70 | `EX_SOFTWARE`: the embedded broker or a worker thread died (a restart helps) |
//! | 73 | `EX_CANTCREAT`: an output folder or file cannot be created |
//! | 74 | `EX_IOERR`: results cannot be written (a closed pipe, a full disk) |
//! | 78 | `EX_CONFIG`: a config, model or engine error (a restart does not help: systemd does not restart on it) |

use std::error::Error;

pub const INPUT_FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_SOFTWARE: u8 = 70;
pub const EX_CANTCREAT: u8 = 73;
pub const EX_IOERR: u8 = 74;
pub const EX_CONFIG: u8 = 78;

/// A command that failed: its exit code and the error `main` prints.
pub type Failure = (u8, Box<dyn Error>);

/// A config, model or engine error.
pub fn config<E: Error + 'static>(e: E) -> Failure {
    (EX_CONFIG, Box::new(e))
}

/// An argument that names something unusable.
pub fn usage<E: Into<Box<dyn Error>>>(e: E) -> Failure {
    (USAGE, e.into())
}

/// Results that could not be written.
pub fn io<E: Into<Box<dyn Error>>>(e: E) -> Failure {
    (EX_IOERR, e.into())
}

/// A message as a config error.
pub fn config_msg(m: impl Into<String>) -> Failure {
    (EX_CONFIG, m.into().into())
}

/// The daemon's errors.
pub fn run_error(e: fer_edge::pipeline::RunError) -> Failure {
    use fer_edge::pipeline::RunError;
    use fer_edge::publish::PublishError;
    let code = match &e {
        RunError::Source(_) | RunError::Runtime(_) | RunError::Metrics(..) => EX_UNAVAILABLE,
        RunError::Publish(PublishError::Broker(_)) => EX_UNAVAILABLE,
        RunError::BrokerDied(_) => EX_SOFTWARE,
        RunError::Ros2(fer_edge::ros2::Ros2Error::NotBuilt) => EX_CONFIG,
        RunError::Ros2(_) => EX_UNAVAILABLE,
        RunError::Config(_) | RunError::Setup(_) | RunError::Publish(_) => EX_CONFIG,
    };
    (code, Box::new(e))
}

/// The bench's errors.
pub fn bench_error(e: fer_edge::bench::BenchError) -> Failure {
    use fer_edge::bench::BenchError;
    let code = match &e {
        BenchError::Setup(_) => EX_CONFIG,
        BenchError::Input(_) => USAGE,
        BenchError::Frame(_) => EX_SOFTWARE,
    };
    (code, Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_error_is_78_in_every_command_and_the_broker_dying_is_70() {
        use fer_edge::pipeline::RunError;
        assert_eq!(run_error(RunError::Config("x".into())).0, EX_CONFIG);
        assert_eq!(config(std::io::Error::other("x")).0, EX_CONFIG);
        assert_eq!(run_error(RunError::BrokerDied("x".into())).0, EX_SOFTWARE);
        assert_eq!(
            bench_error(fer_edge::bench::BenchError::Input("x".into())).0,
            USAGE
        );
    }
}
